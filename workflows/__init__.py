"""When things happen: the round scheduler workflow, its activities, the worker and the client gateway."""
