#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Wait, with exponential backoff, until SSM parameters exist, and return their decrypted values."""
from __future__ import annotations

DOCUMENTATION = r"""
module: swarm_worker_ssm_wait
short_description: Wait until SSM parameters exist and read them (decrypted)
description:
  - Reads SSM Parameter Store parameters with GetParameters (WithDecryption), retrying with exponential
    backoff and jitter while any of them is missing or the endpoint or credentials are not there yet,
    until O(timeout) seconds have passed.
  - A worker that boots before the manager has published the swarm join token waits here instead of
    failing, which is why this is not the amazon.aws.ssm_parameter lookup (read once, on the controller).
  - Permission errors fail at once; waiting would not fix them.
  - Credentials not found (the instance metadata service slow to answer just after launch; botocore asks it
    once, with a 1 s timeout, and a client keeps what it found) are looked up again with a new client at the
    next attempt, rather than failing every attempt until O(timeout).
options:
  names:
    description: Names of the parameters.
    type: list
    elements: str
    required: true
  timeout:
    description: Seconds to wait in total before failing.
    type: int
    default: 600
  initial_delay:
    description: Seconds before the second attempt; doubled after each attempt.
    type: float
    default: 1.0
  max_delay:
    description: Longest pause between two attempts, in seconds.
    type: float
    default: 20.0
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
author: jupyterhub-swarm maintainers
"""

EXAMPLES = r"""
- name: Wait for the join token and manager address
  swarm_worker_ssm_wait:
    names: ["{{ swarm_worker_token_parameter }}", "{{ swarm_worker_addr_parameter }}"]
    timeout: 900
  register: join
  no_log: true
"""

RETURN = r"""
parameters:
  description: Decrypted value of each parameter, by name.
  returned: success
  type: dict
attempts:
  description: GetParameters calls made.
  returned: always
  type: int
waited:
  description: Seconds spent before every parameter existed.
  returned: always
  type: float
"""

import random
import time

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

try:
    from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
except ImportError:  # amazon.aws < 6 (e.g. the collection bundled with Debian 12's ansible package)
    from ansible_collections.amazon.aws.plugins.module_utils.core import AnsibleAWSModule

# Errors that mean "not yet" on a booting instance: no credentials from the instance role yet, no network yet,
# throttling when a whole Auto Scaling Group boots at once.
TRANSIENT_CODES = {"ThrottlingException", "TooManyUpdates", "InternalServerError", "ServiceUnavailable",
                   "RequestLimitExceeded"}


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            names=dict(type="list", elements="str", required=True),
            timeout=dict(type="int", default=600),
            initial_delay=dict(type="float", default=1.0),
            max_delay=dict(type="float", default=20.0),
        ),
        supports_check_mode=True,
    )
    names = module.params["names"]
    if not names or len(names) > 10:
        module.fail_json(msg="names must list 1 to 10 parameters (one GetParameters call)")
    if module.params["timeout"] < 0 or module.params["initial_delay"] <= 0 or module.params["max_delay"] <= 0:
        module.fail_json(msg="timeout must be >= 0, initial_delay and max_delay > 0")

    client = None
    start = time.monotonic()
    deadline = start + module.params["timeout"]
    delay = module.params["initial_delay"]
    attempts = 0
    last_problem = ""
    while True:
        attempts += 1
        try:
            if client is None:   # credentials are resolved when a client is made
                client = module.client("ssm")
            response = client.get_parameters(Names=names, WithDecryption=True)
            missing = sorted(set(response.get("InvalidParameters", [])))
            if not missing:
                values = {p["Name"]: p["Value"] for p in response["Parameters"]}
                module.exit_json(changed=False, parameters=values, attempts=attempts,
                                 waited=round(time.monotonic() - start, 3))
            last_problem = "missing: " + ", ".join(missing)
        except botocore.exceptions.ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code not in TRANSIENT_CODES:
                module.fail_json_aws(e, msg="Reading SSM parameters " + ", ".join(names))
            last_problem = code
        except botocore.exceptions.NoCredentialsError as e:
            client = None   # look the credentials up again: a client never does it by itself
            last_problem = str(e)
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
                botocore.exceptions.ReadTimeoutError) as e:
            last_problem = str(e)
        now = time.monotonic()
        if now >= deadline:
            module.fail_json(msg="SSM parameters not available after %d s (%d attempts; last: %s)"
                             % (module.params["timeout"], attempts, last_problem),
                             attempts=attempts, waited=round(now - start, 3))
        # Full jitter keeps a group of instances booting together from calling in lockstep.
        time.sleep(min(random.uniform(delay / 2, delay), max(deadline - now, 0)))
        delay = min(delay * 2, module.params["max_delay"])


if __name__ == "__main__":
    main()
