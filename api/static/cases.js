// Red and yellow cases: what is overdue or nearly so, reddest first.

import { SEVERITY, STEPS, span, word, zh } from "./labels.js";

function h(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Items of GET /api/v1/cases?light=red,yellow as list entries. */
export function renderCases(ul, items) {
  ul.replaceChildren(
    ...items.map((c) => {
      const li = h("li", `case light-${c.light || "none"}`);
      li.dataset.case = c.case;
      const head = h("div", "case-head");
      head.append(
        h("span", "badge", zh(SEVERITY, c.light) || "—"),
        h("span", "case-id", c.case),
        h("span", "step", word(STEPS, c.step)),
      );
      let left = "—";
      if (typeof c.remaining === "number") {
        left = c.remaining < 0 ? `已超时 ${span(c.remaining)}` : `剩余 ${span(c.remaining)}`;
      }
      const remaining = h("span", c.remaining < 0 ? "remaining overdue" : "remaining", left);
      head.append(remaining);
      const meta = [c.grid ? `网格 ${c.grid}` : "", c.unit ? `单位 ${c.unit}` : ""];
      if (typeof c.deadline === "number") {
        meta.push(`时限 ${new Date(c.deadline * 1000).toLocaleString("zh-CN", { hour12: false })}`);
      }
      li.append(head, h("p", "meta", meta.filter(Boolean).join(" · ")));
      return li;
    }),
  );
}
