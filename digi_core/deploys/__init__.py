"""Deploys: the queue, the worker's pipeline, the API's requests, the reconciler."""
