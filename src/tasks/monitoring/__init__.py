"""Reports on served models: the shadow comparison of champion and challenger."""
