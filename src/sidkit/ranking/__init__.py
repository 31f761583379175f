"""Multi-task rankers that take item representations (hashed ids, Semantic IDs) as features."""
