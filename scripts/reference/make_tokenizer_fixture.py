#!/usr/bin/env python3
"""Writes tests/data/tokenizer/smollm2_cases.jsonl: texts and the token ids llama.cpp gives them.

The reference is llama.cpp through llama-cpp-python (installed in .deps/venv):

    .deps/venv/bin/python scripts/reference/make_tokenizer_fixture.py

Each line is one case:
    {"kind": ..., "text": ..., "parse_special": bool, "ids": [...], "decoded": ...}
"ids" is llama_tokenize(text, add_special=False, parse_special) and "decoded" is
llama_detokenize(ids, remove_special=False, unparse_special=True). Cases whose input is not
valid UTF-8 carry "text_hex" (and "text" null); when the decoded bytes are not valid UTF-8
they are in "decoded_hex" (and "decoded" is null), and "decoded_lossy" has them decoded with
each maximal ill-formed subsequence replaced by U+FFFD (Python's errors="replace"). Chat cases add
"chat": {"messages": [...], "add_generation_prompt": bool}; their text is the model's
tokenizer.chat_template rendered with Jinja2, as Hugging Face renders it.

The texts are generated from a fixed seed, so the output only changes when this script or the
reference changes.
"""

import argparse
import ctypes
import json
import os
import random
import sys

import jinja2
import llama_cpp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_OUTPUT = os.path.join(ROOT, "tests", "data", "tokenizer", "smollm2_cases.jsonl")
SEED = 20240611

WORDS = """the of and to in is was for that with as on by at from his her it an were are which
this be or had not but they have one their all has been more when there who will would can
so out some what time about into than them these other only its then new two also after
first people because could world through over between may year under state while where
model token inference engine batch cache memory request latency throughput server GPU kernel
quick brown fox jumps lazy dog hello world Python Rust C++ JavaScript Tessera SmolLM tokenizer
mountain river ocean forest desert village city country music science history language
""".split()

CODE_SNIPPETS = [
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "for (int i = 0; i < n; ++i) {\n  sum += a[i] * b[i];\n}\n",
    "#include <vector>\n\nint main() {\n\tstd::vector<int> v{1, 2, 3};\n\treturn v.size();\n}\n",
    "const add = (a, b) => a + b;\nconsole.log(add(2, 3));\n",
    '{"name": "tessera", "version": "0.1.0", "tags": ["llm", "inference"], "ok": true}',
    "<html>\n  <body>\n    <p class=\"x\">Hello &amp; welcome</p>\n  </body>\n</html>\n",
    "SELECT id, name FROM users WHERE age >= 21 ORDER BY name DESC LIMIT 10;",
    "if [ -f \"$HOME/.bashrc\" ]; then\n  source \"$HOME/.bashrc\"\nfi\n",
    "x = [i**2 for i in range(10) if i % 2 == 0]  # squares of evens",
    "fn main() {\n    let s: String = \"hi\".to_string();\n    println!(\"{}\", s);\n}\n",
    "    return self._cache.get(key, None)\n\n\n",
    "class Foo:\n\tdef __init__(self):\n\t\tself.x = 1\n",
    "a->b->c; x >>= 2; y <<= 3; z != w && q || !r;",
    "// TODO(#12): handle the edge case\n/* block\n   comment */\n",
    "df.groupby('key').agg({'value': 'sum'}).reset_index()",
    "   \n\t\n  indented_after_blank_lines = True\n",
    "std::unique_ptr<Foo> foo = std::make_unique<Foo>(/*size=*/42);",
    "print(f\"{name!r:>10} = {value:.3f}\")",
    "$ git commit -m \"Fix bug\" && git push origin main",
    "matrix = [[1, 2, 3],\n          [4, 5, 6],\n          [7, 8, 9]]",
]

PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world! How are you today?",
    "In 1969, Apollo 11 landed on the Moon; Neil Armstrong stepped out first.",
    "Large language models predict the next token given the previous ones.",
    "She sells sea-shells by the sea-shore.",
    "It was the best of times, it was the worst of times...",
    "To be, or not to be: that is the question.",
    "E-mail me at someone@example.com or visit https://example.org/path?q=1&r=2.",
    "Prices rose 3.5% to $1,299.99 (up from $1,255.00) on 2024-03-15.",
    "Mr. O'Neil's dog didn't bark; the dogs' owners weren't home.",
    "ALL CAPS SENTENCE WITH SHOUTING!!!",
    "mixedCase camelCase snake_case kebab-case PascalCase SCREAMING_SNAKE",
    "Note: see section 4.2(b)(iii) for details [citation needed].",
    "\"Quoted text,\" she said, 'and single quotes too.'",
    "Tab\tseparated\tvalues\tin\ta\tline",
    "Line one\nLine two\r\nLine three\rLine four",
]

CONTRACTION_BASES = [
    "I'm", "you're", "he's", "she'll", "it's", "we've", "they'd", "don't", "can't", "won't",
    "isn't", "aren't", "wasn't", "let's", "that'll", "who've", "o'clock", "rock'n'roll",
    "y'all", "ma'am", "'tis", "'twas", "the '90s", "Jones's", "the kids' toys",
]

UNICODE_SAMPLES = {
    "latin": ["café", "naïve", "résumé", "Ångström", "façade", "jalapeño", "Müller", "Straße",
              "Łódź", "Dvořák", "São Paulo", "Þórr", "œuvre", "Æsir", "ĳssel", "ﬁnance"],
    "greek": ["Γειά σου Κόσμε", "αβγδεζηθικλμνξοπρστυφχψω", "ΑΒΓΔ", "Ελληνικά", "φιλοσοφία"],
    "cyrillic": ["Привет, мир!", "Съешь же ещё этих мягких французских булок", "ЁЖИК", "Українська",
                 "Српски језик"],
    "cjk": ["你好，世界！", "我爱自然语言处理。", "日本語のテキスト", "ひらがな カタカナ", "한국어 텍스트",
            "東京タワーは333メートルです", "漢字かな交じり文", "中文，标点；符号：“引号”"],
    "arabic": ["مرحبا بالعالم", "اللغة العربية ١٢٣٤", "السَّلَامُ عَلَيْكُمْ"],
    "hebrew": ["שלום עולם", "עִבְרִית"],
    "hindi": ["नमस्ते दुनिया", "हिन्दी भाषा", "क्षत्रिय", "१२३४५ अंक"],
    "thai": ["สวัสดีชาวโลก", "ภาษาไทย"],
    "other": ["Ꭳ Cherokee", "ᚠᚢᚦᚨᚱᚲ runes", "ꙮ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕄𝕒𝕥𝕙", "ℕ ℤ ℚ ℝ ℂ", "½ ¾ ⅓ ⅞",
              "Ⅻ Ⅳ ⅷ", "①②③", "₀₁₂ ⁰¹²", "µ Ω ° ± × ÷", "€ £ ¥ ₹ ₿", "→ ⇒ ∀ ∃ ∈ ∑ ∫ √ ∞",
              "♠♥♦♣ ★☆ ✓✗", "─│┌┐└┘", "𓀀𓀁 hieroglyphs", "𐍈 Gothic"],
}

EMOJI = ["😀", "👍", "👍🏽", "👍🏿", "❤️", "🔥", "🎉", "🤖", "🧠", "🇺🇸", "🇯🇵🇫🇷", "👨‍👩‍👧‍👦",
         "👩🏾‍💻", "🏳️‍🌈", "🧑🏻‍🤝‍🧑🏿", "1️⃣", "#️⃣", "©️", "☺", "✌🏼", "🫠", "🦀", "🐍",
         "😂😂😂", "🙏🏻🙏🏼🙏🏽", "👁️‍🗨️", "🧔‍♂️", "🏴󠁧󠁢󠁳󠁣󠁴󠁿"]

COMBINING = ["e\u0301", "a\u0308", "n\u0303", "o\u0302\u0323", "Z\u0351\u0364\u0300a\u0334\u0317l\u0338g\u035co",
             "\u0301 leading mark", "x\u20dd", "q\u0307\u0323", "A\u030a", "ü vs u\u0308",
             "क\u094d\u0937", "\u0915\u093f", "e\u0301\u0301\u0301\u0301"]

SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<repo_name>", "<reponame>",
            "<file_sep>", "<filename>", "<gh_stars>", "<issue_start>", "<issue_comment>",
            "<issue_closed>", "<jupyter_start>", "<jupyter_text>", "<jupyter_code>",
            "<jupyter_output>", "<jupyter_script>", "<empty_output>"]

UNICODE_SPACES = ["\u00a0", "\u3000", "\u2009", "\u200a", "\u2028", "\u2029", "\u0085", "\u1680",
                  "\u202f", "\u205f", "\u200b", "\ufeff", "\u180e", "\x0b", "\x0c", "\x1c", "\x1f"]

# Blocks to draw random codepoints from: (first, last).
RANDOM_BLOCKS = [
    (0x20, 0x7E), (0x00, 0x1F), (0x80, 0xFF), (0x100, 0x24F), (0x250, 0x2FF), (0x300, 0x36F),
    (0x370, 0x3FF), (0x400, 0x4FF), (0x530, 0x58F), (0x590, 0x5FF), (0x600, 0x6FF),
    (0x900, 0x97F), (0xE00, 0xE7F), (0x10A0, 0x10FF), (0x1100, 0x11FF), (0x1E00, 0x1EFF),
    (0x2000, 0x206F), (0x2070, 0x209F), (0x20A0, 0x20CF), (0x2100, 0x214F), (0x2190, 0x21FF),
    (0x2200, 0x22FF), (0x2500, 0x257F), (0x2600, 0x26FF), (0x2700, 0x27BF), (0x3000, 0x303F),
    (0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xE000, 0xF8FF), (0xFB00, 0xFB4F),
    (0xFE00, 0xFE0F), (0xFF00, 0xFFEF), (0xFFF0, 0xFFFF), (0x10000, 0x1007F), (0x1D400, 0x1D7FF),
    (0x1F300, 0x1F5FF), (0x1F600, 0x1F64F), (0x1F900, 0x1F9FF), (0x20000, 0x2A6DF),
    (0x2EBF0, 0x2EE5F), (0x30000, 0x3134F), (0x40000, 0x4FFFF), (0xE0000, 0xE007F),
    (0xF0000, 0xFFFFD), (0x100000, 0x10FFFD),
]


class Reference:
    """llama.cpp's tokenizer for one model, through llama-cpp-python."""

    def __init__(self, model_path):
        self.llama = llama_cpp.Llama(model_path, vocab_only=True, verbose=False)
        self.vocab = llama_cpp.llama_model_get_vocab(self.llama.model)
        self.chat_template = self.llama.metadata["tokenizer.chat_template"]

    def tokenize(self, data: bytes, parse_special: bool):
        return self.llama.tokenize(data, add_bos=False, special=parse_special)

    def detokenize(self, ids) -> bytes:
        # Llama.detokenize() goes through a 32-byte buffer per token, too small for this
        # vocabulary's longest tokens, so call llama_detokenize directly.
        array = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
        size = 64 + 128 * len(ids)
        buffer = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_detokenize(self.vocab, array, len(ids), buffer, size, False, True)
        assert 0 <= n <= size, n
        return buffer.raw[:n]


def generated_texts(rng: random.Random):
    """Yields (kind, text) pairs; text is str, or bytes for input that is not UTF-8."""
    yield "empty", ""
    for c in range(0x00, 0x80):
        yield "ascii_char", chr(c)
    for c in range(0x80, 0x100):
        yield "latin1_char", chr(c)

    for s in PROSE:
        yield "prose", s
    for _ in range(260):
        n = rng.randint(1, 30)
        words = [rng.choice(WORDS) for _ in range(n)]
        if rng.random() < 0.3:
            words[0] = words[0].capitalize()
        text = " ".join(words)
        text += rng.choice(["", ".", "!", "?", "...", ",", ":", ";", " ", "\n"])
        yield "prose", text

    for s in CODE_SNIPPETS:
        yield "code", s
    for _ in range(60):
        a, b = rng.sample(CODE_SNIPPETS, 2)
        yield "code", a + rng.choice(["\n", "\n\n", "", "    "]) + b

    for length in range(1, 41):
        digits = "".join(rng.choice("0123456789") for _ in range(length))
        yield "numbers", digits
        yield "numbers", " " + digits
        yield "numbers", "x" + digits + "y"
    for _ in range(120):
        form = rng.randrange(8)
        if form == 0:
            text = f"{rng.randint(-10**9, 10**9):,}"
        elif form == 1:
            text = f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 8)}f}"
        elif form == 2:
            text = f"{rng.uniform(1e-30, 1e30):e}"
        elif form == 3:
            text = hex(rng.getrandbits(rng.randint(4, 64)))
        elif form == 4:
            text = f"{rng.randint(1900, 2100)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        elif form == 5:
            text = f"+1 ({rng.randint(200, 999)}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"
        elif form == 6:
            text = f"v{rng.randint(0, 20)}.{rng.randint(0, 99)}.{rng.randint(0, 999)}"
        else:
            text = f"{rng.randint(0, 999)}/{rng.randint(1, 999)} = {rng.random():.4f}"
        yield "numbers", text
    for text in ["١٢٣", "٤٥٦ ٧٨٩", "१२३", "一二三", "Ⅻ", "²³", "½", "12½", "3rd", "4th", "1st2nd"]:
        yield "numbers", text

    whitespace_atoms = [" ", "  ", "\t", "\n", "\r\n", "\r", "\n\n", " \t", "\t ", "\n "]
    for n in range(1, 21):
        yield "whitespace", " " * n
        yield "whitespace", "a" + " " * n + "b"
        yield "whitespace", "word" + " " * n
        yield "whitespace", " " * n + "word"
    for _ in range(120):
        pieces = []
        for _ in range(rng.randint(1, 8)):
            if rng.random() < 0.6:
                pieces.append("".join(rng.choice(whitespace_atoms) for _ in range(rng.randint(1, 4))))
            else:
                pieces.append(rng.choice(WORDS + ["!", "1", "é", "日本", "--"]))
        yield "whitespace", "".join(pieces)
    for space in UNICODE_SPACES:
        yield "whitespace", f"a{space}b"
        yield "whitespace", f"{space}{space}word{space}"
        yield "whitespace", f"x {space} y"

    for base in CONTRACTION_BASES:
        for variant in (base, base.upper(), base.capitalize(), base.swapcase()):
            yield "contractions", variant
            yield "contractions", f"Well, {variant} fine."
    for text in ["'s 't 're 've 'm 'll 'd", "'S 'T 'RE 'VE 'M 'LL 'D", "''s", "'''", "' s",
                 "’s curly", "don’t", "it's'", "'", "''", "x'", "'x", "'ll've'd"]:
        yield "contractions", text

    punctuation = list("!?.,;:-_()[]{}<>/\\|@#$%^&*+=~`'\"")
    for _ in range(120):
        run = "".join(rng.choice(punctuation) for _ in range(rng.randint(1, 12)))
        yield "punctuation", rng.choice(["", " ", "word", "word "]) + run + rng.choice(["", " ", "x"])
    for text in ["...", "!!!", "?!", "---", "***", "===", "<<>>", "!!!???", "…", "——", "«»", "¿¡",
                 "()", "(())", "[[]]", "{{}}", "@@", "##", "$$$", "%%", "&&", "||", "::", "/**/"]:
        yield "punctuation", text

    for kind, samples in UNICODE_SAMPLES.items():
        for s in samples:
            yield "unicode_" + kind, s
            yield "unicode_" + kind, " " + s + " " + s.upper()
    all_samples = [s for samples in UNICODE_SAMPLES.values() for s in samples]
    for _ in range(120):
        parts = [rng.choice(all_samples + WORDS + EMOJI) for _ in range(rng.randint(2, 6))]
        yield "unicode_mixed", rng.choice([" ", "", "\n", ", "]).join(parts)

    for e in EMOJI:
        yield "emoji", e
        yield "emoji", f"I love it {e}!"
        yield "emoji", e * 3
    for _ in range(60):
        yield "emoji", "".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 6)))

    for s in COMBINING:
        yield "combining", s
        yield "combining", f"word {s} word"
    for _ in range(40):
        base = rng.choice("aeiouxyzAEIOU")
        marks = "".join(chr(rng.randint(0x300, 0x36F)) for _ in range(rng.randint(1, 6)))
        yield "combining", base + marks + rng.choice(["", " next", "b"])

    for special in SPECIALS:
        yield "special", special
        yield "special", f"text{special}text"
        yield "special", f" {special} "
        yield "special", f"{special}\n{special}"
    for text in ["<|im_start|>user\nHi<|im_end|>\n", "<|im_start|><|im_end|>", "<|im_start",
                 "im_start|>", "<|im_end|", "<<|im_end|>>", "<|im_start|>>", "<|<|im_end|>|>",
                 "<|endoftext|><|endoftext|><|endoftext|>", "<|IM_START|>", "< |im_start| >",
                 "<reponame><repo_name>", "<repo_name>reponame>", "a<|im_start|>b<|im_end|>c",
                 "<|im_start|>assistant\n", "12<|im_end|>34", "\n<|im_end|>\n\n",
                 "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"]:
        yield "special", text
    for _ in range(40):
        parts = [rng.choice(SPECIALS + WORDS + ["\n", " ", "1", "é", "😀"])
                 for _ in range(rng.randint(2, 8))]
        yield "special", "".join(parts)

    for _ in range(320):
        chars = []
        for _ in range(rng.randint(1, 24)):
            first, last = rng.choice(RANDOM_BLOCKS)
            c = rng.randint(first, last)
            if 0xD800 <= c <= 0xDFFF:
                continue
            chars.append(chr(c))
        yield "random_unicode", "".join(chars)

    yield "long", " ".join(rng.choice(WORDS) for _ in range(900))
    yield "long", " " * 1000
    yield "long", "\n" * 300 + "end"
    yield "long", "a" * 3000
    yield "long", "ab" * 1500
    yield "long", "9" * 2000
    yield "long", "😀" * 400
    yield "long", "".join(rng.choice(CODE_SNIPPETS) for _ in range(12))
    yield "long", "Supercalifragilisticexpialidocious" * 40
    yield "long", "!" * 1500 + "?" * 1500

    invalid = [b"\xff", b"\xfe\xff", b"abc\x80def", b"\xc3", b"\xc3(", b"\xe2\x82", b"\xe2\x82(",
               b"\xf0\x9f\x98", b"\xf0\x9f\x98 x", b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80",
               b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf0\x80\x80\x80",
               b"\xf8\x88\x80\x80\x80", b"hello \xff world", b"\x80\x80\x80", b"caf\xe9",
               b"\xe6\x97\xa5\xe6\x9c", b"12\xff34", b"'\xffs", b" \xff ", b"\xef\xbf\xbd",
               b"<|im_start|>\xff<|im_end|>", b"\x04\x06\x13\x14\x16\x1d", b"a\x00b"]
    for data in invalid:
        yield "invalid_utf8", data


def chat_cases(template: str):
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    compiled = env.from_string(template)
    conversations = [
        [{"role": "user", "content": "Hello!"}],
        [{"role": "system", "content": "You are terse."}],
        [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Hi"}],
        [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
        [{"role": "user", "content": "Name a color."}, {"role": "assistant", "content": "Blue."},
         {"role": "user", "content": "Another one?"}],
        [{"role": "system", "content": "Answer in French."},
         {"role": "user", "content": "How are you?"},
         {"role": "assistant", "content": "Très bien, merci !"}],
        [{"role": "user", "content": "Write code:\n```python\nprint('hi')\n```\n"}],
        [{"role": "user", "content": "Emoji test 👩🏾‍💻 and 日本語"}],
    ]
    for messages in conversations:
        for add_generation_prompt in (True, False):
            text = compiled.render(messages=messages, add_generation_prompt=add_generation_prompt)
            yield messages, add_generation_prompt, text


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    ref = Reference(args.model)
    rng = random.Random(SEED)
    lines = []

    def add(kind, text, parse_special, chat=None):
        data = text if isinstance(text, bytes) else text.encode("utf-8")
        ids = ref.tokenize(data, parse_special)
        decoded = ref.detokenize(ids)
        case = {"kind": kind}
        if isinstance(text, bytes):
            case["text"] = None
            case["text_hex"] = data.hex()
        else:
            case["text"] = text
        case["parse_special"] = parse_special
        case["ids"] = ids
        try:
            case["decoded"] = decoded.decode("utf-8")
        except UnicodeDecodeError:
            case["decoded"] = None
            case["decoded_hex"] = decoded.hex()
            case["decoded_lossy"] = decoded.decode("utf-8", errors="replace")
        if chat is not None:
            case["chat"] = chat
        lines.append(json.dumps(case, ensure_ascii=False))

    for kind, text in generated_texts(rng):
        add(kind, text, False)
        raw = text if isinstance(text, bytes) else text.encode("utf-8")
        if b"<" in raw or rng.random() < 0.15:
            add(kind, text, True)
    for messages, add_generation_prompt, text in chat_cases(ref.chat_template):
        add("chat", text, True,
            chat={"messages": messages, "add_generation_prompt": add_generation_prompt})

    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
    size = os.path.getsize(args.output)
    print(f"make_tokenizer_fixture: wrote {len(lines)} cases ({size} bytes) to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
