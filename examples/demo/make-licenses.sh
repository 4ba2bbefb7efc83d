#!/usr/bin/env bash
# Re-makes the demo licenses of examples/demo/provisioning/ with license-issuer and the
# DEMO key. The demo key is public (it is in this repository): a keyring that trusts it
# must never be put on a real phone.
#
# Usage: bash examples/demo/make-licenses.sh   (from anywhere; builds license-issuer)
set -euo pipefail
demo=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$demo/../.."
cargo build -q --bin license-issuer
issuer=target/debug/license-issuer
key=$demo/DEMO-signing-key.der

if [[ ! -f $key ]]; then
    "$issuer" keygen -o "$key" --label "DEMO key, not for production" >"$demo/keyring.line"
fi
{
    echo "# DEMO keyring: trusts the demo key of examples/demo, whose private half is public."
    echo "# Never install this keyring on a real phone."
    "$issuer" pubkey --key "$key" --label "DEMO key, not for production"
} >"$demo/keyring"
rm -f "$demo/keyring.line"

# The phone's own license (MAC 0004f2000001): USB call recording for good.
"$issuer" sign --key "$key" --serial 0004f2000001 --kind phone \
    --feature usb-call-recording,new,2026-01-01T00:00:00Z,never \
    -o "$demo/provisioning/0004f2000001-license.cfg"

# The site license (site serial 100000000001): a year of VQMon and the productivity
# suite for 25 devices, and conference management on trial.
"$issuer" sign --key "$key" --serial 100000000001 --kind site \
    --feature vqmon,new,2026-06-01T00:00:00Z,2027-06-01T00:00:00Z \
    --feature productivity-suite,renewal,2026-06-01T00:00:00Z,2027-06-01T00:00:00Z,25 \
    --feature conference-management,trial,2026-11-01T00:00:00Z,2027-01-31T00:00:00Z \
    -o "$demo/provisioning/000000000000-license.cfg"
echo "made $(ls "$demo"/provisioning/*.cfg | wc -l) demo licenses in $demo/provisioning"
