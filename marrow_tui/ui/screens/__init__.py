"""Full screens: the main one and the output view."""
