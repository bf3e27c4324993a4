#!/bin/sh
# The hello app (inside its container): a page naming the greeting from the encrypted env,
# served by busybox httpd on :8080, and a log line a minute so the logs show it lives.
set -eu
mkdir -p /www
started=$(date -u '+%Y-%m-%dT%H:%M:%SZ')
cat >/www/index.html <<HTML
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hello · moonstack</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem">
<h1>hello</h1>
<p id="greeting">${GREETING:-no greeting: the encrypted env did not arrive}</p>
<p>This page is served from inside a CVM, through the moonstack gateway. Started ${started}.</p>
</body></html>
HTML
echo "hello: serving on :8080 (greeting: ${GREETING:+set}${GREETING:-missing})"
( while sleep 60; do echo "hello: alive $(date -u '+%H:%M:%S')"; done ) &
exec httpd -f -v -p 8080 -h /www
