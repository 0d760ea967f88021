"""Interactive text games: environments, generated games, the episode loop."""
