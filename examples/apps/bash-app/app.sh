#!/bin/bash
# The bash-app example (examples/apps/bash-app/README.md): an app that is one bash script, run
# by the guest agent's bash runner (no container). It asks the agent for its identity and a
# derived key over the dstack API socket (curl --unix-socket), then serves a page on :8080
# with busybox httpd. The key stays in this process; the page shows its SHA-256 only.
set -euo pipefail
sock=${DSTACK_SIMULATOR_ENDPOINT:-/var/run/dstack.sock}
api() { curl -sS --fail --unix-socket "$sock" -H 'content-type: application/json' "http://dstack/$1" -d "${2:-{\}}"; }
field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" | head -1; }
info=$(api Info)
app_id=$(field app_id <<<"$info")
instance_id=$(field instance_id <<<"$info")
key=$(api GetKey '{"path":"/bash-app","purpose":"demo"}' | field key)
key_hash=$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)
mkdir -p www
cat >www/index.html <<HTML
<!doctype html><html lang="en"><head><meta charset="utf-8"><title>bash-app</title></head>
<body><h1>bash-app</h1>
<p>app <code>$app_id</code>, instance <code>$instance_id</code></p>
<p>a key derived for this app: sha256 <code>$key_hash</code></p>
<p>${MESSAGE:-no message: the encrypted env did not arrive}</p>
</body></html>
HTML
echo "bash-app: app $app_id instance $instance_id, key sha256 $key_hash"
( while sleep 60; do echo "bash-app: alive $(date -u '+%H:%M:%S')"; done ) &
exec busybox httpd -f -v -p 8080 -h www
