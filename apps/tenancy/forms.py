import zoneinfo

from django import forms

from apps.core.ui import ExpectedVersionField

from .models import slug_validator, validate_trace_link_template

TIME_ZONES = sorted(zoneinfo.available_timezones())


class TenantForm(forms.Form):
    slug = forms.CharField(
        max_length=50,
        validators=[slug_validator],
        help_text="lowercase letters, digits and dashes; cannot change later",
    )
    name = forms.CharField(max_length=120)
    time_zone = forms.ChoiceField(
        choices=[(z, z) for z in TIME_ZONES],
        initial="UTC",
        help_text="charts and times on pages use it",
    )
    with_default_environments = forms.BooleanField(
        required=False, initial=True, label="Create development, staging and production"
    )
    reason = forms.CharField(required=False, max_length=2000)


class TenantEditForm(forms.Form):
    # the version the form was filled from: saving is refused if it moved on meanwhile
    expected_version = ExpectedVersionField()
    name = forms.CharField(max_length=120)
    time_zone = forms.ChoiceField(choices=[(z, z) for z in TIME_ZONES])
    trace_link_template = forms.CharField(
        required=False,
        max_length=500,
        validators=[validate_trace_link_template],
        label="Trace link",
        help_text="where a request record's trace opens: an http(s) URL with {trace_id}, "
        "e.g. https://tempo.example/trace/{trace_id}; empty for no links",
    )
    reason = forms.CharField(required=False, max_length=2000)


class AgentForm(forms.Form):
    slug = forms.CharField(
        max_length=50,
        validators=[slug_validator],
        help_text="what runtimes and the CLI call it, e.g. support-bot",
    )
    name = forms.CharField(max_length=120)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    reason = forms.CharField(required=False, max_length=2000)


class AgentEditForm(forms.Form):
    # the version the form was filled from: saving is refused if it moved on meanwhile
    expected_version = ExpectedVersionField()
    name = forms.CharField(max_length=120)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    reason = forms.CharField(required=False, max_length=2000)


class EnvironmentForm(forms.Form):
    slug = forms.CharField(max_length=50, validators=[slug_validator])
    name = forms.CharField(max_length=120)
    is_production = forms.BooleanField(
        required=False, label="Production (changes ask for a reason)"
    )
    reason = forms.CharField(required=False, max_length=2000)


class EnvironmentEditForm(forms.Form):
    # the version the form was filled from: saving is refused if it moved on meanwhile
    expected_version = ExpectedVersionField()
    name = forms.CharField(max_length=120)
    is_production = forms.BooleanField(
        required=False, label="Production (changes ask for a reason)"
    )
    reason = forms.CharField(required=False, max_length=2000)
