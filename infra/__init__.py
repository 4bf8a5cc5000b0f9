"""Local stack, migrations and topic map of notifyflow."""
