#!/usr/bin/env python3
"""render_envoy.py TEMPLATE OUT: substitutes only the known ${VAR} placeholders from the environment."""
import os, re, sys
known = ("ENVOY_PORT", "ENVOY_ADMIN_PORT", "KEYSTONE_PORT", "PROM_PORT", "WASM_PATH")
text = open(sys.argv[1]).read()
for k in known:
    text = text.replace("${%s}" % k, os.environ[k])
left = sorted(set(re.findall(r"\$\{([A-Z_]+)\}", text)) & set(known))
if left:
    sys.exit("unsubstituted placeholders: %s" % left)
open(sys.argv[2], "w").write(text)
