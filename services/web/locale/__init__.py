"""The pages' catalogs (`<language>/LC_MESSAGES/messages.po`) and the tools that keep them whole.

`make messages` extracts every text marked for translation (babel.cfg) into `messages.pot` and updates
each catalog; `python -m services.web.locale.check` lists the texts that have no Albanian yet.
"""
