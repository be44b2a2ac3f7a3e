// meshlm web page: a streaming chat client and a live view of the pipeline stages.
'use strict';

const $ = (id) => document.getElementById(id);
const history = [];
let controller = null;

const keyInput = $('api-key');
keyInput.value = localStorage.getItem('meshlm-api-key') || '';
keyInput.addEventListener('change', () => localStorage.setItem('meshlm-api-key', keyInput.value));

function headers() {
  const h = { 'Content-Type': 'application/json' };
  if (keyInput.value) h['Authorization'] = 'Bearer ' + keyInput.value;
  return h;
}

function addMessage(role, text) {
  const div = document.createElement('div');
  div.className = 'msg ' + role;
  const reasoning = document.createElement('div');
  reasoning.className = 'reasoning';
  reasoning.hidden = true;
  const content = document.createElement('div');
  content.className = 'content';
  content.textContent = text;
  const meta = document.createElement('div');
  meta.className = 'meta';
  div.append(reasoning, content, meta);
  $('messages').append(div);
  $('messages').scrollTop = $('messages').scrollHeight;
  return { div, reasoning, content, meta };
}

// Reads server-sent events from a fetch response, calling onData for each JSON payload.
async function readEvents(response, onData) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let sep;
    while ((sep = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, sep);
      buffer = buffer.slice(sep + 2);
      for (const line of event.split('\n')) {
        if (!line.startsWith('data: ')) continue;
        const data = line.slice(6);
        if (data === '[DONE]') return;
        onData(JSON.parse(data));
      }
    }
  }
}

async function send(text) {
  history.push({ role: 'user', content: text });
  addMessage('user', text);
  const out = addMessage('assistant', '');
  out.div.classList.add('streaming');
  let answer = '';
  let thinking = '';
  const started = performance.now();
  let firstToken = 0;
  let usage = null;
  controller = new AbortController();
  $('send').disabled = true;
  $('stop').disabled = false;
  try {
    const response = await fetch('/v1/chat/completions', {
      method: 'POST',
      headers: headers(),
      signal: controller.signal,
      body: JSON.stringify({
        model: $('model-name').textContent,
        messages: history,
        stream: true,
        stream_options: { include_usage: true },
        temperature: Number($('temperature').value),
        max_tokens: Number($('max-tokens').value),
      }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error((body.error && body.error.message) || response.statusText);
    }
    await readEvents(response, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices && chunk.choices[0];
      if (!choice || !choice.delta) return;
      const d = choice.delta;
      if (d.reasoning_content) {
        thinking += d.reasoning_content;
        out.reasoning.hidden = false;
        out.reasoning.textContent = thinking;
      }
      if (d.content) {
        if (!firstToken) firstToken = performance.now();
        answer += d.content;
        out.content.textContent = answer;
      }
      if (d.tool_calls) {
        answer += d.tool_calls.map((c) => `[tool call] ${c.function.name}(${c.function.arguments})`).join('\n');
        out.content.textContent = answer;
      }
      $('messages').scrollTop = $('messages').scrollHeight;
    });
    history.push({ role: 'assistant', content: answer });
    const seconds = (performance.now() - started) / 1000;
    if (usage) {
      const ttft = firstToken ? ((firstToken - started) / 1000).toFixed(2) + ' s to first token, ' : '';
      const details = usage.prompt_tokens_details || {};
      const cached = details.cached_tokens ? `, ${details.cached_tokens} of ${usage.prompt_tokens} prompt tokens from the cache` : '';
      out.meta.textContent = `${usage.completion_tokens} tokens, ${ttft}${(usage.completion_tokens / seconds).toFixed(1)} tokens/s${cached}`;
    }
  } catch (err) {
    if (err.name === 'AbortError') {
      out.meta.textContent = 'stopped';
      history.push({ role: 'assistant', content: answer });
    } else {
      out.div.classList.add('error');
      out.meta.textContent = 'error: ' + err.message;
      history.pop();
    }
  } finally {
    out.div.classList.remove('streaming');
    out.div.classList.add('done');
    controller = null;
    $('send').disabled = false;
    $('stop').disabled = true;
  }
}

$('composer').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('prompt').value.trim();
  if (!text || controller) return;
  $('prompt').value = '';
  send(text);
});
$('prompt').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    $('composer').requestSubmit();
  }
});
$('stop').addEventListener('click', () => controller && controller.abort());
$('clear').addEventListener('click', () => {
  history.length = 0;
  $('messages').textContent = '';
});

// ---- cluster view ----
const colors = ['#4f8cff', '#3fb950', '#d29922', '#db61a2', '#a371f7', '#39c5cf', '#f0883e'];
const tpsHistory = [];
let lastGenerated = null;
let lastTime = 0;

function formatBytes(n) {
  if (n == null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + ' ' + units[i];
}

async function pollHealth() {
  try {
    const response = await fetch('/health');
    const h = await response.json();
    $('model-name').textContent = h.model;
    $('status-dot').className = 'dot ' + (h.status === 'ok' ? 'ok' : 'bad');
    $('status-dot').title = h.status;
    $('active').textContent = h.active;
    $('queued').textContent = h.queued;
    const body = $('stages').querySelector('tbody');
    body.textContent = '';
    const bar = $('layer-bar');
    bar.textContent = '';
    const total = h.n_layers || 1;
    h.stages.forEach((s, i) => {
      const tr = document.createElement('tr');
      const cells = [i, s.node, `${s.layers[0]}–${s.layers[1] - 1}`,
                     formatBytes(s.memory_bytes), s.state];
      cells.forEach((c, j) => {
        const td = document.createElement('td');
        td.textContent = c;
        if (j === 4) td.className = s.state;
        tr.append(td);
      });
      body.append(tr);
      const seg = document.createElement('div');
      seg.style.width = (100 * (s.layers[1] - s.layers[0]) / total) + '%';
      seg.style.background = colors[i % colors.length];
      seg.title = `stage ${i}: ${s.node}, layers ${s.layers[0]}–${s.layers[1] - 1}`;
      bar.append(seg);
    });
    $('cluster-info').textContent = `${h.architecture}, ${h.n_layers} layers, context ${h.context}, ` +
      `${h.max_active} parallel sequences`;
  } catch (err) {
    $('status-dot').className = 'dot bad';
  }
}

function metricValue(text, name) {
  const m = text.match(new RegExp('^' + name + ' ([0-9.eE+-]+)$', 'm'));
  return m ? Number(m[1]) : null;
}

function drawChart() {
  const canvas = $('tps-chart');
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const max = Math.max(1, ...tpsHistory);
  ctx.strokeStyle = '#4f8cff';
  ctx.beginPath();
  tpsHistory.forEach((v, i) => {
    const x = (i / 59) * canvas.width;
    const y = canvas.height - (v / max) * (canvas.height - 4) - 2;
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
}

async function pollMetrics() {
  try {
    const text = await (await fetch('/metrics')).text();
    const generated = metricValue(text, 'meshlm_engine_generated_tokens_total');
    const now = performance.now();
    if (generated != null && lastGenerated != null) {
      const tps = (generated - lastGenerated) / ((now - lastTime) / 1000);
      $('tps').textContent = tps.toFixed(1);
      tpsHistory.push(tps);
      if (tpsHistory.length > 60) tpsHistory.shift();
      drawChart();
    }
    lastGenerated = generated;
    lastTime = now;
  } catch (err) { /* the status dot shows it */ }
}

pollHealth();
pollMetrics();
setInterval(pollHealth, 2000);
setInterval(pollMetrics, 1000);
