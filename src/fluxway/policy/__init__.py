"""Policy hooks run before and after every routed call (auth, limits, budgets, cache, logging)."""
