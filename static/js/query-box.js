// The search box's suggestions: keys while a term is being typed, then the values of keys that have a fixed set
// (action, resource, status, category, severity, method) and created's operators. Plain JavaScript, an ARIA
// combobox: Down/Up move through the list, Enter or Tab takes the highlighted suggestion, Escape closes it.
(function () {
  "use strict";
  var input = document.getElementById("f-q");
  var list = document.getElementById("q-suggestions");
  if (!input || !list) return;
  var data = JSON.parse(input.dataset.suggest || "{}");
  if (!data.keys) return;
  var options = [], active = -1, token = null;

  // The term around the caret: [start, end) and its text.
  function current() {
    var text = input.value, caret = input.selectionStart === null ? text.length : input.selectionStart;
    var start = caret, end = caret;
    while (start > 0 && !/\s/.test(text[start - 1])) start -= 1;
    while (end < text.length && !/\s/.test(text[end])) end += 1;
    return {start: start, end: caret, after: end, text: text.slice(start, caret)};
  }

  function candidates(term) {
    var text = term.text, negated = text[0] === "-", body = negated ? text.slice(1) : text;
    var colon = body.indexOf(":");
    if (colon < 0) {
      if (!body && !negated) return [];
      return data.keys.filter(function (key) { return key.indexOf(body.toLowerCase()) === 0; })
        .map(function (key) { return {label: key + ":", insert: (negated ? "-" : "") + key + ":", open: true}; });
    }
    var key = body.slice(0, colon).toLowerCase(), value = body.slice(colon + 1), values = data.values[key];
    if (!values) return [];
    var comma = value.lastIndexOf(","), done = value.slice(0, comma + 1), partial = value.slice(comma + 1).toLowerCase();
    if (key === "created") {
      return partial ? [] : values.map(function (op) {
        return {label: "created:" + op + "2026-11-01", insert: text.slice(0, text.length - value.length) + op, open: true};
      });
    }
    return values.filter(function (v) { return v.toLowerCase().indexOf(partial) === 0 && v.toLowerCase() !== partial; })
      .map(function (v) {
        return {label: v, insert: text.slice(0, text.length - value.length) + done + v, open: false};
      });
  }

  function close() {
    list.hidden = true;
    list.textContent = "";
    options = [];
    active = -1;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }

  function highlight(index) {
    options.forEach(function (li, i) { li.setAttribute("aria-selected", i === index ? "true" : "false"); });
    active = index;
    if (index >= 0) {
      input.setAttribute("aria-activedescendant", options[index].id);
      options[index].scrollIntoView({block: "nearest"});
    } else {
      input.removeAttribute("aria-activedescendant");
    }
  }

  function take(index) {
    // A value replaces the whole word; a key replaces what was typed of it up to the caret and the rest of the
    // old key up to its colon, so the value after it is kept (editing "acti|on:login" gives "action:login").
    var choice = options[index].suggestion, text = input.value, cut = choice.open ? token.end : token.after;
    var rest = text.slice(token.end, token.after), colon = rest.indexOf(":");
    if (choice.open && colon >= 0 && token.text.indexOf(":") < 0) cut = token.end + colon + 1;
    var tail = text.slice(cut);
    var inserted = choice.insert + (choice.open || tail[0] === " " ? "" : " ");
    input.value = text.slice(0, token.start) + inserted + tail;
    var caret = token.start + inserted.length;
    input.setSelectionRange(caret, caret);
    close();
    if (choice.open) update();
  }

  function update() {
    token = current();
    var found = candidates(token).slice(0, 12);
    close();
    if (!found.length) return;
    found.forEach(function (suggestion, i) {
      var li = document.createElement("li");
      li.id = "q-suggestion-" + i;
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", "false");
      li.className = "text-mono";
      li.textContent = suggestion.label;
      li.suggestion = suggestion;
      li.addEventListener("mousedown", function (event) { event.preventDefault(); take(i); });
      list.appendChild(li);
      options.push(li);
    });
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
  }

  input.addEventListener("input", update);
  input.addEventListener("blur", close);
  input.addEventListener("click", close);  // the caret moved: the suggestions were for another place
  input.addEventListener("keyup", function (event) {
    if (["ArrowLeft", "ArrowRight", "Home", "End"].indexOf(event.key) >= 0) close();
  });
  input.addEventListener("keydown", function (event) {
    if (list.hidden) {
      if (event.key === "ArrowDown") { update(); if (options.length) { highlight(0); event.preventDefault(); } }
      return;
    }
    if (event.key === "ArrowDown") { highlight((active + 1) % options.length); event.preventDefault(); }
    else if (event.key === "ArrowUp") { highlight(active <= 0 ? options.length - 1 : active - 1); event.preventDefault(); }
    else if ((event.key === "Enter" || event.key === "Tab") && active >= 0) { take(active); event.preventDefault(); }
    else if (event.key === "Escape") { close(); event.preventDefault(); }
  });
})();
