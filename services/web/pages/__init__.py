"""HTML page routers: the focal point's review page, the console and the dev mailbox."""
