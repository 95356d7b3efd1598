"""The GraphQL API: types, the request context, and every query, mutation and subscription."""
