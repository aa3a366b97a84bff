"""examples/twilio_gateway.py runs as shipped: a login through TwilioGateway over a Twilio stand-in, a STOP refusal
mapped to downstream_carrier_error, and no code, token or full number in what it prints."""

from __future__ import annotations

import re

from tests.helpers_process import ROOT, run_python

EXAMPLE = ROOT / "examples" / "twilio_gateway.py"


def test_twilio_gateway_example_runs_as_a_script() -> None:
    proc = run_python(str(EXAMPLE))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "auth_token='******'" in out
    assert "Twilio: sent to XXXXXXX0142 (HTTP 201, message SM01" in out
    assert "code accepted: session issued with factors [password/knowledge, otp/sms]" in out
    refusal = ("Twilio did not send the SMS to XXXXXXX0143: HTTP 400, Twilio error 21610: "
               "the recipient opted out with STOP")
    assert out.count(refusal) == 2  # the automatic send at sign-in, then the explicit resend
    assert "an explicit resend is refused: downstream_carrier_error (HTTP 502)" in out
    assert re.search(r"^  delivery\.failed +member=member-bob +phone=XXXXXXX0143 reason=rejected$", out, re.M)
    assert out.rstrip().endswith("OK: codes went only to the phones; no code, token or credential was printed.")
    assert not re.search(r"(?<!\d)\d{6}(?!\d)", out), "six digits in a row were printed: a code?"
    assert "+1415555014" not in out
    assert "example-auth-token" not in out
