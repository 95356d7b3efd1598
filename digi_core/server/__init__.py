"""Digi's HTTP server: the aiohttp app with the GraphQL API, health and metrics."""
