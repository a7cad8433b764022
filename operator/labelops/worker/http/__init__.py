"""The worker's HTTP API (Flask): labelers claim tasks and submit labels on it.

app.create_app builds the Flask app from one blueprint per area: tasks (claim, submit,
release), labeler (who am I), campaign (what to label, progress), health (probes, metrics,
the OpenAPI document) and page (the labeling page). hooks.py holds what every request goes
through (authentication, metrics, the response check against the OpenAPI document) and
problem_responses.py turns every refusal into an RFC 9457 problem.
"""
