"""The dashboard: server-rendered pages for marketers, support, analysts and finance.

A plain Flask blueprint under /dashboard on the same app as the API (not in the OpenAPI
document). Handlers call the same operations as the API blueprints; the dashboard edge
(`edge.change`) commits once per change and writes its audit entry in that transaction.
"""
