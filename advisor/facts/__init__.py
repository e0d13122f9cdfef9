"""Facts: named, typed measurements of a run, a space, a study and their context; the engine's
only input. Submodules are imported where needed (curves pulls in pandas, which plan does not).
"""
