"""Muster's API, in one home: the custom resource kinds (:mod:`muster_api.v1alpha1`), the
money and identifier types every contract uses (:mod:`muster_api.common`), the search
attributes (:mod:`muster_api.search_attributes`), and one contracts module per pattern
(:mod:`muster_api.approval`, :mod:`muster_api.fulfillment`, :mod:`muster_api.scheduling`):
workflow type names, task queues, id functions, and the input, state, update and signal
types. Clients (the gateway, the CLIs, the operator) depend on this package, never on a
worker's."""
