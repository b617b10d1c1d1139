"""Training mechanics the methods share: EMA teacher, schedules, Monte-Carlo uncertainty, level sets, level
consistency, and the logger of method terms and state."""
