"""Training recipe pieces shared by the modules: optimisers, schedules, run results."""
