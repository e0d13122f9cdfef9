"""Names shared by the search modules: schemas, study attributes, default storages."""

SCHEMA = "advisor.search/1"
SANITY_SCHEMA = "advisor.search-sanity/1"
SPEC_ATTR = "advisor_search"
STOP_ATTR = "advisor_stopped"
FINALISTS_ATTR = "advisor_finalists"
WORKER_ATTR = "advisor_worker:"     # study system attribute per process running trials: + host:pid
OWNERLESS_GRACE_S = 60.0            # a RUNNING trial with no owner, when its creator may live
DEFAULT_STORAGE = "sqlite:///advisor-search.db"
DEFAULT_JOURNAL = "advisor-search.journal"
