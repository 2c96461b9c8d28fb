"""The python-app example: uses json, email and http.client from the standard library."""
import email.message
import http.client
import json

msg = email.message.EmailMessage()
msg["Subject"] = "distill"
msg["To"] = "user@example.org"
msg.set_content("hello")
result = {
    "subject": msg["Subject"],
    "content_type": msg.get_content_type(),
    "http_ok": http.client.OK,
    "reason": http.client.responses[http.client.NOT_FOUND],
}
print(json.dumps(result, sort_keys=True))
