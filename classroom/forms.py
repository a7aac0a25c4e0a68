"""HTML forms of the classroom web front (teacher session creation, student join).

Forms only validate and normalise input; the writes happen in :mod:`classroom.services`.
"""

from django import forms

from classroom.choices import (
    DEFAULT_FRAME_INTERVAL_S,
    DISPLAY_NAME_MAX_LENGTH,
    JOIN_CODE_LENGTH,
    MAX_FRAME_INTERVAL_S,
    MIN_FRAME_INTERVAL_S,
    TITLE_MAX_LENGTH,
    AnalysisMode,
    AnalysisSite,
)

CONSENT_TEXT = (
    "I agree that, while I stream, pictures of my camera or screen are analysed for faces and "
    "expressions, on the school's server or on this device as my teacher chose (the next page "
    "says which, before anything is shared). No picture is stored, only numbers. I can stop "
    "and withdraw at any time."
)
"""The consent checkbox's label: the first layer of a layered notice (ICO's guidance on privacy
information); the join page's "What happens when you stream" details are the second layer."""


class SessionCreateForm(forms.Form):
    """A teacher's new class session: a title, how often students send a frame, whether
    expressions are analysed or attention only (``choices.AnalysisMode``), and where
    (``choices.AnalysisSite``, with the on-device sessions' server fallback)."""

    title = forms.CharField(
        max_length=TITLE_MAX_LENGTH,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
        help_text="Shown to the students when they join.",
    )
    frame_interval_s = forms.FloatField(
        label="Frame interval (seconds)",
        min_value=MIN_FRAME_INTERVAL_S,
        max_value=MAX_FRAME_INTERVAL_S,
        initial=DEFAULT_FRAME_INTERVAL_S,
        widget=forms.NumberInput(attrs={"step": "0.1"}),
        help_text=(
            f"Each student sends one frame every this many seconds "
            f"({MIN_FRAME_INTERVAL_S:g} to {MAX_FRAME_INTERVAL_S:g})."
        ),
    )

    analysis = forms.ChoiceField(
        label="What to analyse",
        choices=AnalysisMode.choices,
        initial=AnalysisMode.EXPRESSION,
        help_text=(
            "Attention only: faces are counted and head pose (facing the screen or not) is "
            "estimated, but no expression is computed, stored or shown - not on the board, not "
            "in the report or its exports. Choose it where expression recognition is not wanted "
            "or not lawful."
        ),
    )

    analysis_site = forms.ChoiceField(
        label="Where faces are analysed",
        choices=AnalysisSite.choices,
        initial=AnalysisSite.SERVER,
        required=False,  # absent: on the server, as before the choice existed
        help_text=(
            "On each student's device: the student's browser finds and reads the faces itself "
            "and sends only numbers, so no picture ever leaves it (the strongest privacy, and no "
            "load on the school's server); it needs a recent browser and downloads about 8 MB "
            "once. The numbers cannot be checked by the server, and the report says so."
        ),
    )
    server_fallback = forms.BooleanField(
        label="Let a browser that cannot analyse on the device send pictures to the server",
        required=False,
        initial=False,
        help_text="On-device sessions only. Off: such a student cannot take part.",
    )

    def __init__(self, *args, emotion_inference: bool = True, **kwargs):
        """``emotion_inference=False`` (the site-wide off-switch) offers attention only."""
        super().__init__(*args, **kwargs)
        if not emotion_inference:
            field = self.fields["analysis"]
            field.choices = [(AnalysisMode.ATTENTION, AnalysisMode.ATTENTION.label)]
            field.initial = AnalysisMode.ATTENTION
            field.help_text = (
                "Expression recognition is switched off on this site: every session analyses "
                "attention only (faces counted, head pose estimated, no expression)."
            )

    def clean_analysis_site(self) -> str:
        """The chosen site; ``"server"`` when the field is left out."""
        return self.cleaned_data.get("analysis_site") or AnalysisSite.SERVER

    def clean_title(self) -> str:
        """Strip surrounding spaces; refuse a title that is only spaces.

        Returns:
            The stripped title.

        Raises:
            forms.ValidationError: The title is blank.
        """
        title = self.cleaned_data["title"].strip()
        if not title:
            raise forms.ValidationError("Give the session a title.")
        return title


class JoinForm(forms.Form):
    """A student's join request: the session's code, a display name, explicit consent."""

    code = forms.CharField(
        label="Join code",
        # Room for the spaces and dashes people type; clean_code() strips them.
        max_length=JOIN_CODE_LENGTH + 8,
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "autocapitalize": "characters", "spellcheck": "false"}
        ),
        help_text="Your teacher's code, e.g. K7QX2M.",
    )
    display_name = forms.CharField(
        label="Your name",
        max_length=DISPLAY_NAME_MAX_LENGTH,
        widget=forms.TextInput(attrs={"autocomplete": "nickname"}),
        help_text="Shown in your teacher's list.",
    )
    consent = forms.BooleanField(
        label=CONSENT_TEXT,
        required=True,
        error_messages={"required": "You can only join after ticking the consent box."},
    )

    def clean_code(self) -> str:
        """Normalise the join code the way people type it.

        Returns:
            The code without spaces or dashes, in upper case (join codes are upper case).
        """
        return "".join(self.cleaned_data["code"].split()).replace("-", "").upper()

    def clean_display_name(self) -> str:
        """Collapse runs of whitespace in the display name.

        Returns:
            The name with single spaces and no surrounding whitespace.

        Raises:
            forms.ValidationError: The name is blank.
        """
        name = " ".join(self.cleaned_data["display_name"].split())
        if not name:
            raise forms.ValidationError("Enter a name.")
        return name
