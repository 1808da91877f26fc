"""The daemon's HTTP API: My Inbox for agents, health and readiness for operators.

``app.create_app`` builds the FastAPI application from an ``ApiContext``;
``server.HttpService`` serves it with uvicorn inside the daemon's event loop,
beside the SMTP listener. Routes are thin: every decision is in
``ingestd.services``, which the CLI shares.
"""
