// The hard corpus for the tokenizer conformance test and benchmark, as Buffers (some cases are
// deliberately invalid UTF-8). Deterministic: the same cases every run.
export const MODELS = ['qwen3', 'llama3', 'gemma3', 'deepseek_v3', 'llama2'];

const FIXED = [
  '', ' ', '  ', 'a', '\n', '\r\n', '\t', 'Hello world', ' Hello world ', '   leading and trailing   ',
  'def f(x):\n\treturn x  *  2\t# tab\n\n\n    if x:\n        pass\r\n',
  'int main() {\n    printf("%d\\n", 42);\t\t// comment\n}\n',
  'for (int i = 0; i < 10; ++i)   {  a[i] += b[i] >> 2;  }',
  '12345678901234567890123456789012345678901234567890', '3.14159265358979 1,000,000 0x1F 1e-10',
  'Version 2.0.1-beta+build.123 at 12:30:45 on 2024-01-31',
  '中文测试：你好，世界！这是一个分词器。', '日本語のテキスト、ひらがな カタカナ 漢字。', '한국어 텍스트 입니다',
  'مرحبا بالعالم، هذا اختبار.', 'שלום עולם, זה מבחן.', 'नमस्ते दुनिया, यह एक परीक्षण है।',
  'สวัสดีชาวโลก นี่คือการทดสอบ', 'Привет, мир! Это тест.', 'Γειά σου Κόσμε! Αυτό είναι τεστ.',
  'Emoji: 😀😃😄 👨‍👩‍👧‍👦 👩🏽‍💻 🏳️‍🌈 🇺🇸🇯🇵🇩🇪 1️⃣ ❤️ 🤷‍♂️',
  'Combining: e\u0301 a\u0308 o\u0302\u0323 n\u0303 Å vs A\u030A ḱ\u0301 \u1100\u1161\u11A8',
  'Café naïve résumé façade coöperate', 'ﬁ ﬀ ＡＢＣ ① ² ½ Ⅻ ㎏ ｶﾀｶﾅ',
  'Spaces:\u00a0nbsp\u2003em\u3000ideographic\u200bzwsp\u2028ls\u2029ps\u0085nel\ufeffbom',
  'Line1\r\nLine2\rLine3\n\nLine5\n\n\n\n',
  '<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n',
  '<|endoftext|><|endoftext|>text<|endoftext|>', '<|im_start <|im_start| |im_start|> <|im_start|',
  '<s>Hello</s> <s> spaced </s><s><s>', '<bos><start_of_turn>user\nhello<end_of_turn>\n<eos>',
  '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>',
  '<｜begin▁of▁sentence｜>User: hi<｜end▁of▁sentence｜>', '<think>\nreasoning\n</think>\n\nanswer',
  "I'm sure they'll say we've DON'T can't it's YOU'RE I'D 'S 'll ſ'S",
  'https://example.com/path?q=1&r=two#frag user@example.org',
  '{"key": [1, 2.5, null, true], "nested": {"a": "b"}}', '<div class="x">&amp; &lt;tag&gt;</div>',
  '# Title\n\n* item one\n* item **bold** _it_\n\n```python\nprint("hi")\n```\n',
  '!!!???...,,,;;;:::---___===+++***&&&^^^%%%$$$###@@@~~~```',
  '▁▁ spaces ▁ ▁▁▁ already', '\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n',
  '                                                  fifty spaces',
  '\t\t\t\t\ttabs\t \t \t', 'MiXeD CaSe WORDS and UPPERCASE ÀÉÎÕÜ ß ẞ İstanbul',
  'x'.repeat(300), 'ab'.repeat(400) + ' ' + '9'.repeat(500),
];

// Invalid UTF-8 byte sequences, mixed with text.
const INVALID = [
  [0xff, 0xfe, 0x41], [0xe4, 0xb8], [0x61, 0xe4, 0xb8, 0x62], [0xc0, 0xaf], [0xed, 0xa0, 0x80],
  [0x80, 0x61, 0x62, 0x63], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xf0, 0x9f, 0x98], [0xf4, 0x90, 0x80, 0x80],
  [0x3c, 0x7c, 0x69, 0x6d, 0xff, 0x7c, 0x3e], [0xe2, 0x96], [0x20, 0xc3, 0x20, 0xa9, 0x20],
];

function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
}

const ALPHABETS = [
  'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ', '0123456789', ' \t\n\r  ',
  '.,;:!?\'"()[]{}<>/\\|-_=+*&^%$#@~`', '中文字测试你好世界日本語漢字', 'ひらがなカタカナ한국어',
  'مرحباعالم', 'שלוםעולם', 'नमस्तेदुनिया', 'สวัสดีชาวโลก', 'ПриветМир', 'ΓειάσουΚόσμε',
  '\u0301\u0308\u0302\u0323\u200d\ufe0f', '😀👨👩👧🇺🇸🏽', 'éàüöñçÅ', '▁', '\u00a0\u3000\u2028\u0085',
];

function randomText(r, len) {
  let out = '';
  while ([...out].length < len) {
    const a = [...ALPHABETS[Math.floor(r() * ALPHABETS.length)]];
    const run = 1 + Math.floor(r() * 6);
    for (let k = 0; k < run; ++k) out += a[Math.floor(r() * a.length)];
  }
  return out;
}

export function specialStrings() {
  return ['<|im_start|>', '<|im_end|>', '<|endoftext|>', '<s>', '</s>', '<bos>', '<eos>',
          '<start_of_turn>', '<end_of_turn>', '<|begin_of_text|>', '<|eot_id|>',
          '<｜begin▁of▁sentence｜>', '<think>', '</think>', '<unk>', '<pad>'];
}

export function buildCorpus() {
  const cases = FIXED.map((s) => Buffer.from(s, 'utf8'));
  for (const bytes of INVALID) {
    cases.push(Buffer.from(bytes));
    cases.push(Buffer.concat([Buffer.from('text '), Buffer.from(bytes), Buffer.from(' more')]));
  }
  const r = rng(12345);
  const specials = specialStrings();
  for (let i = 0; i < 250; ++i) {
    let t = randomText(r, 1 + Math.floor(r() * 120));
    if (i % 5 === 0) {
      const at = Math.floor(r() * t.length);
      t = t.slice(0, at) + specials[Math.floor(r() * specials.length)] + t.slice(at);
    }
    cases.push(Buffer.from(t, 'utf8'));
  }
  // Big ones: a 100 kB word (letters only), 100 kB of CJK without spaces, a long digit string.
  const letters = 'abcdefghijklmnopqrstuvwxyz';
  let word = '';
  const r2 = rng(777);
  while (word.length < 100000) word += letters[Math.floor(r2() * 26)];
  cases.push(Buffer.from(word));
  cases.push(Buffer.from('中文字测试你好世界日本語漢字'.repeat(2400)));
  cases.push(Buffer.from('1234567890'.repeat(2000)));
  return cases;
}

// ~n bytes of mixed text for the benchmark.
export function benchText(n) {
  const parts = [];
  let size = 0;
  const r = rng(4242);
  const base = FIXED.filter((s) => s.length > 10);
  while (size < n) {
    const s = r() < 0.5 ? base[Math.floor(r() * base.length)] : randomText(r, 200);
    parts.push(s);
    size += Buffer.byteLength(s) + 1;
  }
  return parts.join('\n');
}
