"""Built-in task plugins; each is found through the `s2s.tasks` entry point, like a third-party one."""
