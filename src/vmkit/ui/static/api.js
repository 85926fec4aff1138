// The dashboard's only way to vmkitd: fetch() with the token in the Authorization header,
// the event stream read through fetch() (EventSource cannot send headers), and websockets
// that carry the token as a subprotocol (browsers cannot set their headers either).

export class ApiError extends Error {
  constructor(status, kind, message) {
    super(message);
    this.status = status;
    this.kind = kind;
  }
}

export class Api {
  constructor(token) {
    this.token = token;
  }

  async request(method, path, body) {
    const headers = { Authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(`/v1${path}`, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, "network", "vmkitd cannot be reached; is it still running?");
    }
    // 304: a start of a running VM, a stop of one that is down: nothing to do, no error.
    if (response.status === 204 || response.status === 304) return null;
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const message = data?.message || `vmkitd answered ${response.status}`;
      throw new ApiError(response.status, data?.error || "error", message);
    }
    return data;
  }

  get(path) { return this.request("GET", path); }
  post(path, body) { return this.request("POST", path, body ?? {}); }
  delete(path) { return this.request("DELETE", path); }
  put(path, body) { return this.request("PUT", path, body ?? {}); }

  websocket(path) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/v1${path}`,
                             ["vmkit", `bearer.${this.token}`]);
    ws.binaryType = "arraybuffer";
    return ws;
  }

  websocketUrl(path) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    return `${scheme}://${location.host}/v1${path}`;
  }

  // Follow /v1/events: onEvent(name, data) for each event; onStatus("live" | "lost").
  // Reconnects after a drop, and the first event of each connection is the whole list,
  // so nothing that changed in between is missed. Returns a function that stops it.
  follow(onEvent, onStatus) {
    let stopped = false;
    let controller = null;
    let delay = 500;
    const run = async () => {
      while (!stopped) {
        controller = new AbortController();
        try {
          const response = await fetch("/v1/events", {
            headers: { Authorization: `Bearer ${this.token}` }, signal: controller.signal,
          });
          if (response.status === 401) {
            onEvent("unauthorized", null);
            return;
          }
          if (!response.ok) throw new Error(`status ${response.status}`);
          onStatus("live");
          delay = 500;
          await readEvents(response.body, onEvent);
        } catch (e) {
          if (stopped) return;
        }
        onStatus("lost");
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, 10000);
      }
    };
    run();
    return () => { stopped = true; controller?.abort(); };
  }
}

async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}
