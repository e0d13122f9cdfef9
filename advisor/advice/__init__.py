"""Advice builders: findings turned into what the user should do, in order."""
