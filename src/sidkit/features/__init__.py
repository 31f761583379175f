"""Item representations for rankers: Semantic-ID token bags, hashed ids, dense content."""
