"""The operator console (Textual): a client of the GraphQL API, built in the console issue."""
