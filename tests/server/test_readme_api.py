"""The README's curl lines as a new user runs them (issue 22, items 2 and 11): in order, as written,
against `streamlit run app.py` on a fresh demo store, each answers 2xx; and the server's log, from
the demo build to the shutdown, has none of the noise a user took for errors."""
import re
import subprocess

from servers import ROOT, free_port, start_server, status, stop_server, wait_ready

NOISE = ("No runtime found", "RuntimeWarning", "leaked semaphore", "Traceback", "Invalid HTTP request")


def readme_curl_lines() -> list[str]:
    """Every curl command in the README's indented code blocks, continuation lines included."""
    commands, current = [], None
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        code = line.startswith("    ")
        if code and line.strip().startswith("curl "):
            current = line.strip()
            commands.append(current)
        elif code and current is not None and (commands[-1].endswith("\\") or commands[-1].count("'") % 2):
            commands[-1] += "\n" + line  # a continued line, or inside a quoted JSON body
        else:
            current = None
    return commands


def test_the_readme_has_the_curl_lines_of_the_loop():
    lines = readme_curl_lines()
    assert len(lines) >= 14 and all(re.search(r"localhost:850[12]/api/", c) for c in lines)
    assert any("localhost:8502/api/" in c for c in lines)  # the serving processes' port has its example
    assert any("hard-examples" in c for c in lines) and any("compare" in c for c in lines)


def test_every_readme_curl_line_answers_2xx_in_order_on_a_fresh_demo_store(tmp_path):
    log = tmp_path / "streamlit.log"
    serving = f"127.0.0.1:{free_port()}"  # where the README's localhost:8502 (a serving process) is here
    url, proc = start_server({"MMS_STORE": str(tmp_path / "store" / "mms.duckdb"), "MMS_SERVING_PROCESSES": "1",
                              "MMS_SERVING_PORT": serving.rpartition(":")[2]}, log)
    try:
        # the server builds the demo store as it starts; the API answers 503 until then
        wait_ready(url, proc, log, ready=lambda: status(url + "/api/health") == 200
                   and status(f"http://{serving}/api/health") == 200, seconds=600)
        for command in readme_curl_lines():
            run = (command.replace("localhost:8501", url.removeprefix("http://")).replace("localhost:8502", serving)
                   + " -sS -w '\\n%{http_code}'")
            done = subprocess.run(["bash", "-c", run], capture_output=True, text=True, timeout=600)
            body, _, code = done.stdout.rpartition("\n")
            assert done.returncode == 0 and re.fullmatch(r"2\d\d", code), \
                f"{command}\nanswered {code}: {body[-500:]} {done.stderr[-300:]}"
    finally:
        stop_server(proc)
    text = log.read_text()
    noise = [line for line in text.splitlines() if any(n in line for n in NOISE)]
    assert not noise, "\n".join(noise) + "\n---\n" + text[-3000:]
    assert proc.returncode is not None and "demo store ready" in text
