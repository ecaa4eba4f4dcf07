"""Running recipes: the runner and its steps, locks, several processes, the report step, suites."""
