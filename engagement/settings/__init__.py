"""Settings split by deployment: ``base`` (shared), ``local`` (developer and demo), ``test``,
``production``. Select with ``DJANGO_SETTINGS_MODULE``; every value is read from the environment.
"""
