"""Storage back ends: SQL (source of truth), LanceDB (vectors + full text), networkx (graph)."""
