#include "grammar/grammar.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <numeric>

#include "core/error.h"
#include "core/splitmix.h"

namespace meshlm::grammar {
namespace {

std::string set_str(const ByteSet& s) {
  auto ch = [](int b) {
    char buf[8];
    if (b >= 0x21 && b < 0x7F && b != '\\' && b != ']' && b != '-' && b != '"')
      std::snprintf(buf, sizeof buf, "%c", b);
    else
      std::snprintf(buf, sizeof buf, "\\x%02X", b);
    return std::string(buf);
  };
  int count = 0;
  for (int b = 0; b < 256; ++b) count += s.has(uint8_t(b));
  if (count == 1)
    for (int b = 0; b < 256; ++b)
      if (s.has(uint8_t(b))) return "\"" + ch(b) + "\"";
  std::string out = "[";
  for (int b = 0; b < 256;) {
    if (!s.has(uint8_t(b))) {
      ++b;
      continue;
    }
    int e = b;
    while (e + 1 < 256 && s.has(uint8_t(e + 1))) ++e;
    out += ch(b);
    if (e > b) out += "-" + ch(e);
    b = e + 1;
  }
  return out + "]";
}

}  // namespace

std::string Grammar::str() const {
  std::string out;
  for (size_t r = 0; r < rule_alts.size(); ++r) {
    out += rule_names[r] + " ::=";
    bool first = true;
    for (int32_t start : rule_alts[r]) {
      out += first ? " " : " | ";
      first = false;
      bool any = false;
      for (int32_t p = start; code[size_t(p)] != kEnd; ++p) {
        int32_t e = code[size_t(p)];
        if (any) out += " ";
        any = true;
        out += e >= 0 ? rule_names[size_t(e)] : set_str(sets[size_t(set_index(e))]);
      }
      if (!any) out += "\"\"";
    }
    out += "\n";
  }
  return out;
}

// ---- builder ----

int32_t GrammarBuilder::declare(std::string name) {
  alts_.emplace_back();
  names_.push_back(std::move(name));
  defined_.push_back(false);
  return int32_t(alts_.size() - 1);
}

void GrammarBuilder::define(int32_t rule, std::vector<Seq> alternatives) {
  alts_[size_t(rule)] = std::move(alternatives);
  defined_[size_t(rule)] = true;
}

int32_t GrammarBuilder::set(const ByteSet& s) {
  for (size_t i = 0; i < sets_.size(); ++i)
    if (sets_[i] == s) return -int32_t(i) - 2;
  sets_.push_back(s);
  return -int32_t(sets_.size() - 1) - 2;
}

Seq GrammarBuilder::literal(std::string_view bytes) {
  Seq s;
  for (unsigned char c : bytes) s.push_back(byte(c));
  return s;
}

Grammar GrammarBuilder::build(int32_t root) const {
  const size_t n = alts_.size();
  if (root < 0 || size_t(root) >= n) throw Error("grammar", "no root rule");
  for (size_t r = 0; r < n; ++r)
    if (!defined_[r]) throw Error("grammar", "rule '" + names_[r] + "' is never defined");
  // Nullable rules (derive the empty string), to a fixed point.
  std::vector<bool> nullable(n, false);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < n; ++r) {
      if (nullable[r]) continue;
      for (const Seq& alt : alts_[r]) {
        bool all = std::all_of(alt.begin(), alt.end(),
                               [&](int32_t e) { return e >= 0 && nullable[size_t(e)]; });
        if (all) {
          nullable[r] = changed = true;
          break;
        }
      }
    }
  }
  // Rules reachable without consuming a byte: a cycle there is left recursion.
  std::vector<std::vector<int32_t>> left(n);
  for (size_t r = 0; r < n; ++r)
    for (const Seq& alt : alts_[r])
      for (int32_t e : alt) {
        if (e < 0) break;
        left[r].push_back(e);
        if (!nullable[size_t(e)]) break;
      }
  std::vector<int> color(n, 0);
  std::function<void(size_t)> visit = [&](size_t r) {
    color[r] = 1;
    for (int32_t s : left[r]) {
      if (color[size_t(s)] == 1)
        throw Error("grammar", "rule '" + names_[size_t(s)] +
                                   "' refers to itself before matching anything (a $ref cycle "
                                   "with no content between)");
      if (color[size_t(s)] == 0) visit(size_t(s));
    }
    color[r] = 2;
  };
  for (size_t r = 0; r < n; ++r)
    if (color[r] == 0) visit(r);

  Grammar g;
  g.sets = sets_;
  g.rule_names = names_;
  g.rule_alts.resize(n);
  for (size_t r = 0; r < n; ++r)
    for (const Seq& alt : alts_[r]) {
      g.rule_alts[r].push_back(int32_t(g.code.size()));
      g.code.insert(g.code.end(), alt.begin(), alt.end());
      g.code.push_back(Grammar::kEnd);
    }
  g.root = root;
  return g;
}

// ---- vocabulary ----

Vocabulary::Vocabulary(std::vector<std::string> token_bytes, std::vector<int32_t> eos,
                       size_t n_ids)
    : bytes_(std::move(token_bytes)), eos_(std::move(eos)), n_ids_(n_ids) {
  if (bytes_.size() > n_ids_) bytes_.resize(n_ids_);
  std::erase_if(eos_, [&](int32_t id) { return id < 0 || size_t(id) >= n_ids_; });
  std::vector<int32_t> every, rest;
  plain_le_.assign(kMaxPlain + 1, MaskWords(words(), 0));
  for (size_t i = 0; i < bytes_.size(); ++i) {
    const std::string& b = bytes_[i];
    if (b.empty() || is_eos(int32_t(i))) continue;
    every.push_back(int32_t(i));
    const bool plain = b.size() <= kMaxPlain &&
                       std::all_of(b.begin(), b.end(), [](char c) { return plain_byte(uint8_t(c)); });
    if (plain)
      plain_le_[b.size()][i >> 6] |= uint64_t{1} << (i & 63);
    else
      rest.push_back(int32_t(i));
  }
  for (size_t n = 1; n <= kMaxPlain; ++n)
    for (size_t w = 0; w < words(); ++w) plain_le_[n][w] |= plain_le_[n - 1][w];
  all_ = build(every);
  rest_ = build(rest);
}

Vocabulary::Trie Vocabulary::build(const std::vector<int32_t>& ids) const {
  Trie t;
  std::vector<int32_t> order = ids;
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return bytes_[size_t(a)] < bytes_[size_t(b)]; });
  std::vector<uint32_t> path;  // open node per depth - 1
  // Closing the deepest open node: its subtree is complete.
  auto close = [&] {
    const uint32_t c = path.back();
    path.pop_back();
    t.nodes[c].skip = uint32_t(t.nodes.size());
    t.sub_end[c] = uint32_t(t.tokens.size());
    if (!path.empty()) {
      t.below[path.back()].add(t.below[c]);
      t.below[path.back()].add(t.nodes[c].byte);
    }
  };
  const std::string* prev = &empty_;
  for (int32_t id : order) {
    const std::string& s = bytes_[size_t(id)];
    size_t lcp = 0;
    while (lcp < s.size() && lcp < prev->size() && s[lcp] == (*prev)[lcp]) ++lcp;
    lcp = std::min(lcp, path.size());
    while (path.size() > lcp) close();
    for (size_t d = lcp; d < s.size(); ++d) {
      if (d + 1 > 0xFFFF) break;
      Node nd{uint8_t(s[d]), uint16_t(d + 1), 0, uint32_t(t.tokens.size()),
              uint32_t(t.tokens.size())};
      path.push_back(uint32_t(t.nodes.size()));
      t.nodes.push_back(nd);
      t.below.emplace_back();
      t.sub_end.push_back(0);
    }
    if (path.size() == s.size()) {
      Node& last = t.nodes[path.back()];
      if (last.tok_end == t.tokens.size()) {
        t.tokens.push_back(id);
        last.tok_end = uint32_t(t.tokens.size());
      }
    }
    t.max_depth = std::max(t.max_depth, path.size());
    prev = &s;
  }
  while (!path.empty()) close();
  return t;
}

const std::string& Vocabulary::bytes(int32_t id) const {
  return id >= 0 && size_t(id) < bytes_.size() ? bytes_[size_t(id)] : empty_;
}

bool Vocabulary::is_eos(int32_t id) const {
  return std::find(eos_.begin(), eos_.end(), id) != eos_.end();
}

// ---- automaton ----

Automaton::Automaton(Grammar grammar, size_t max_states)
    : g_(std::move(grammar)), max_states_(max_states) {
  nodes_.emplace_back(Grammar::kEnd, -1);  // node 0: the empty stack
}

int32_t Automaton::node(int32_t pos, int32_t parent) {
  const uint64_t key = (uint64_t(uint32_t(pos)) << 32) | uint32_t(parent);
  auto [it, fresh] = node_ids_.try_emplace(key, int32_t(nodes_.size()));
  if (fresh) nodes_.emplace_back(pos, parent);
  return it->second;
}

// Pushes onto `out` every stack (as its top node) that `pos` over `parent` expands to: stacks
// whose top is a byte set, or the empty stack (node 0) when everything is matched.
void Automaton::expand(int32_t pos, int32_t parent, std::vector<int32_t>& out, int depth) {
  if (depth > 100000) throw Error("grammar", "grammar expansion too deep");
  const int32_t e = g_.code[size_t(pos)];
  if (e == Grammar::kEnd) {
    if (parent == 0) {
      out.push_back(0);
    } else {
      auto [ppos, pparent] = nodes_[size_t(parent)];
      expand(ppos, pparent, out, depth + 1);
    }
  } else if (e < 0) {
    out.push_back(node(pos, parent));
  } else {
    // The rule's continuation; a reference that ends its alternative returns straight to the
    // parent (tail call), so right-recursive lists keep a flat stack.
    const int32_t cont =
        g_.code[size_t(pos) + 1] == Grammar::kEnd ? parent : node(pos + 1, parent);
    for (int32_t start : g_.rule_alts[size_t(e)]) expand(start, cont, out, depth + 1);
  }
}

int32_t Automaton::intern_state(std::vector<int32_t>& stacks) {
  if (stacks.empty()) return kDead;
  std::sort(stacks.begin(), stacks.end());
  stacks.erase(std::unique(stacks.begin(), stacks.end()), stacks.end());
  uint64_t h = stacks.size();
  for (int32_t s : stacks) h = splitmix64(h ^ uint64_t(uint32_t(s)));
  auto& bucket = state_ids_[h];
  for (int32_t id : bucket)
    if (states_[size_t(id)].stacks == stacks) return id;
  if (states_.size() >= max_states_)
    throw Error("grammar", "the grammar needs more than " + std::to_string(max_states_) +
                               " automaton states");
  State st;
  st.stacks = stacks;
  st.accepting = stacks.front() == 0;
  states_.push_back(std::move(st));
  bucket.push_back(int32_t(states_.size() - 1));
  return int32_t(states_.size() - 1);
}

int32_t Automaton::start() {
  std::lock_guard lock(mutex_);
  if (start_ == -2) {
    std::vector<int32_t> out;
    for (int32_t s : g_.rule_alts[size_t(g_.root)]) expand(s, 0, out, 0);
    start_ = intern_state(out);
    if (start_ == kDead) throw Error("grammar", "the grammar matches nothing");
  }
  return start_;
}

int32_t Automaton::next_locked(int32_t state, uint8_t byte) {
  State* st = &states_[size_t(state)];
  if (!st->next) {
    st->next = std::make_unique<int32_t[]>(256);
    std::fill(st->next.get(), st->next.get() + 256, -2);
  }
  const int32_t known = st->next[byte];
  if (known != -2) return known;
  scratch_.clear();
  std::vector<int32_t> out;
  for (int32_t n : st->stacks) {
    if (n == 0) continue;
    auto [pos, parent] = nodes_[size_t(n)];
    if (g_.sets[size_t(Grammar::set_index(g_.code[size_t(pos)]))].has(byte))
      expand(pos + 1, parent, out, 0);
  }
  const int32_t to = intern_state(out);
  states_[size_t(state)].next[byte] = to;  // states_ may have grown: index again
  return to;
}

const ByteSet& Automaton::loops_locked(int32_t state) {
  if (!states_[size_t(state)].loops_known) {
    ByteSet loops;
    for (int b = 0; b < 256; ++b)
      if (next_locked(state, uint8_t(b)) == state) loops.add(uint8_t(b));
    states_[size_t(state)].loops = loops;
    states_[size_t(state)].loops_known = true;
  }
  return states_[size_t(state)].loops;
}

int32_t Automaton::next(int32_t state, uint8_t byte) {
  std::lock_guard lock(mutex_);
  return next_locked(state, byte);
}

int32_t Automaton::advance(int32_t state, std::string_view bytes) {
  std::lock_guard lock(mutex_);
  for (unsigned char c : bytes) {
    if (state < 0) return kDead;
    state = next_locked(state, c);
  }
  return state;
}

bool Automaton::accepting(int32_t state) {
  std::lock_guard lock(mutex_);
  return state >= 0 && states_[size_t(state)].accepting;
}

bool Automaton::can_continue(int32_t state) {
  std::lock_guard lock(mutex_);
  if (state < 0) return false;
  const auto& s = states_[size_t(state)].stacks;
  return s.size() > 1 || (s.size() == 1 && s[0] != 0);
}

size_t Automaton::state_count() {
  std::lock_guard lock(mutex_);
  return states_.size();
}

size_t Automaton::mask_count() {
  std::lock_guard lock(mutex_);
  return masks_;
}

// The plain run of a state (see State::plain_run), following the chain of plain-byte successors
// at most kMaxPlain steps.
int Automaton::plain_run_locked(int32_t state) {
  State& st0 = states_[size_t(state)];
  if (st0.plain_run >= 0) return st0.plain_run;
  constexpr int kMax = int(Vocabulary::kMaxPlain);
  int run = 0;
  int32_t s = state;
  bool ok = true;
  for (;;) {
    // Does every plain byte lead from s to one same state?
    int32_t to = -2;
    for (int b = 0x20; b < 0x7F && ok; ++b) {
      if (!Vocabulary::plain_byte(uint8_t(b))) continue;
      const int32_t t = next_locked(s, uint8_t(b));
      if (to == -2) to = t;
      if (t != to) ok = false;
    }
    if (!ok) break;  // mixed: this state is not uniform; exact only at the start (run 0)
    if (to < 0) break;  // no plain byte goes on: the run ends here, exactly
    ++run;
    if (to == s || run >= kMax) {
      run = kMax;  // loops (a free string) or at least every plain token's length
      break;
    }
    s = to;
  }
  // Mixed after `run` uniform steps: tokens longer than the run might still pass, so the shortcut
  // would not be exact; use the plain walk for such states.
  if (!ok) run = 0;
  states_[size_t(state)].plain_run = int16_t(run);
  return run;
}

void Automaton::walk(const Vocabulary::Trie& trie, int32_t state, uint64_t* bits) {
  const auto& nodes = trie.nodes;
  const auto& toks = trie.tokens;
  auto subset = [](const ByteSet& a, const ByteSet& b) {
    return !(a.w[0] & ~b.w[0]) && !(a.w[1] & ~b.w[1]) && !(a.w[2] & ~b.w[2]) &&
           !(a.w[3] & ~b.w[3]);
  };
  std::vector<int32_t> at(trie.max_depth + 1);
  at[0] = state;
  const size_t n = nodes.size();
  for (size_t i = 0; i < n;) {
    const Vocabulary::Node& nd = nodes[i];
    const int32_t s = next_locked(at[nd.depth - 1u], nd.byte);
    if (s < 0) {
      i = nd.skip;
      continue;
    }
    at[nd.depth] = s;
    // A byte that loops (inside a string: most of them): when every byte below this node loops
    // too, every token of the subtree stays in this state: all allowed, no walk.
    const bool whole = s == at[nd.depth - 1u] && subset(trie.below[i], loops_locked(s));
    const uint32_t end = whole ? trie.sub_end[i] : nd.tok_end;
    for (uint32_t t = nd.tok_begin; t < end; ++t) {
      const int32_t id = toks[t];
      bits[size_t(id) >> 6] |= uint64_t{1} << (id & 63);
    }
    i = whole ? nd.skip : i + 1;
  }
}

std::shared_ptr<const MaskWords> Automaton::mask(int32_t state, const Vocabulary& vocab) {
  std::lock_guard lock(mutex_);
  if (vocab_ && vocab_ != &vocab) throw Error("grammar", "one automaton, two vocabularies");
  vocab_ = &vocab;
  if (state < 0) return std::make_shared<MaskWords>(vocab.words(), 0);
  if (auto m = states_[size_t(state)].mask) return m;
  // Inside a JSON string every plain token (printable ASCII but '"' and '\\') of at most the
  // state's plain run is allowed: a precomputed set, and only the other tokens are walked.
  const int run = plain_run_locked(state);
  auto words = run > 0 ? std::make_shared<MaskWords>(vocab.plain_up_to(size_t(run)))
                       : std::make_shared<MaskWords>(vocab.words(), 0);
  walk(run > 0 ? vocab.rest() : vocab.all(), state, words->data());
  if (states_[size_t(state)].accepting)
    for (int32_t id : vocab.eos()) (*words)[size_t(id) >> 6] |= uint64_t{1} << (id & 63);
  states_[size_t(state)].mask = words;
  ++masks_;
  return words;
}

// ---- matcher ----

Matcher::Matcher(std::shared_ptr<Automaton> automaton, std::shared_ptr<const Vocabulary> vocab)
    : automaton_(std::move(automaton)), vocab_(std::move(vocab)), state_(automaton_->start()) {}

std::shared_ptr<const MaskWords> Matcher::mask() const {
  if (finished_) {
    auto m = std::make_shared<MaskWords>(vocab_->words(), 0);
    for (int32_t id : vocab_->eos()) (*m)[size_t(id) >> 6] |= uint64_t{1} << (id & 63);
    return m;
  }
  return automaton_->mask(state_, *vocab_);
}

bool Matcher::accept(int32_t token) {
  if (vocab_->is_eos(token)) {
    if (!automaton_->accepting(state_)) return false;
    finished_ = true;
    return true;
  }
  if (finished_) return false;
  const std::string& b = vocab_->bytes(token);
  if (b.empty()) return false;
  return accept_bytes(b);
}

bool Matcher::accept_bytes(std::string_view bytes) {
  const int32_t s = automaton_->advance(state_, bytes);
  if (s < 0) return false;
  state_ = s;
  return true;
}

bool Matcher::complete() const { return finished_ || automaton_->accepting(state_); }

}  // namespace meshlm::grammar
