"""The fusion router: FastAPI app, fusion engine, runs and the run store."""
