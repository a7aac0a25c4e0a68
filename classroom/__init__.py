"""The classroom app: users and roles, class sessions, participants and consent, frame intake,
analysis results, live dashboard, reports and admin.

It talks to the inference worker only through Celery task names (``classroom.dispatch``) and is
called back through ``classroom.services.record_frame_result``.
"""
