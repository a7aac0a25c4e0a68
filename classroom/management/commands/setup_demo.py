"""``python manage.py setup_demo``: a demo teacher and a live class session, printed for `make demo`."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.urls import reverse

from classroom import services


class Command(BaseCommand):
    help = "Create (or reset) the demo teacher and start a new live demo session; print the login and join code."

    def add_arguments(self, parser):
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000", help="public base URL of the server"
        )
        parser.add_argument("--username", default="teacher")
        parser.add_argument(
            "--password",
            default=None,
            help="demo teacher's password (default: a new random one each run)",
        )
        parser.add_argument("--title", default="Demo class")
        parser.add_argument("--interval", type=float, default=1.0, help="frame interval in seconds")

    @transaction.atomic
    def handle(self, *args, **opts):
        User = get_user_model()
        password = opts["password"] or secrets.token_urlsafe(9)
        teacher, _ = User.objects.get_or_create(
            username=opts["username"], defaults={"role": "teacher"}
        )
        teacher.role = "teacher"
        teacher.set_password(password)
        teacher.save()
        session = services.create_session(
            teacher=teacher, title=opts["title"], frame_interval_s=opts["interval"]
        )
        services.start_session(session, by=teacher)
        base = opts["url"].rstrip("/")
        join = f"{base}{reverse('classroom:join')}?code={session.join_code}"
        board = f"{base}{reverse('classroom:session_detail', args=[session.pk])}"
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "Demo ready.",
                    f"  Teacher login : {base}/accounts/login/  username {teacher.username}  password {password}",
                    f"  Live board    : {board}",
                    f"  Join code     : {session.join_code}",
                    f"  Student page  : {join}",
                    "",
                ]
            )
        )
