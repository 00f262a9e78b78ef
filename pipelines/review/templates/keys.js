(function () {
  "use strict";
  var cards = Array.prototype.slice.call(document.querySelectorAll("article.card"));
  var verdicts = {a: "anomaly", e: "expected", f: "false_alarm", n: "new_normal"};
  if (!cards.length) { return; }
  function at() {
    var el = document.activeElement, card = el && el.closest ? el.closest("article.card") : null;
    return card ? cards.indexOf(card) : -1;
  }
  function go(i) {
    var card = cards[Math.max(0, Math.min(cards.length - 1, i))];
    card.focus();
    card.scrollIntoView({block: "nearest"});
  }
  document.addEventListener("keydown", function (ev) {
    if (ev.altKey || ev.ctrlKey || ev.metaKey || ev.defaultPrevented) { return; }
    var i = at(), typing = ev.target && (ev.target.tagName === "INPUT" || ev.target.tagName === "TEXTAREA");
    if (typing) {
      if ((ev.key === "Enter" || ev.key === "Escape") && i >= 0) { ev.preventDefault(); cards[i].focus(); }
      return;
    }
    if (ev.key === "j" || ev.key === "k") {
      ev.preventDefault();
      go(i < 0 ? 0 : i + (ev.key === "j" ? 1 : -1));
    } else if (ev.key === "c") {
      ev.preventDefault();
      cards[Math.max(i, 0)].querySelector("input[name=comment]").focus();
    } else if (verdicts[ev.key]) {
      ev.preventDefault();
      cards[Math.max(i, 0)].querySelector('button[value="' + verdicts[ev.key] + '"]').click();
    }
  });
}());
