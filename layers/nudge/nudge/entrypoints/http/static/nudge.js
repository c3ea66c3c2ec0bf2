/* Nudge in-app: the signed-in user's inbox, onboarding checklist and surveys, in any page.
 *
 *   <script src="https://<your api>/v1/nudge.js" data-key="<client key>"
 *           data-token="<the user's inbox token, signed by your server>" async></script>
 *
 * Optional: data-api (the API's base, default: where this script came from), data-target (a CSS
 * selector to render into; default: a panel fixed at the bottom right). Everything renders in a
 * shadow root, so the page's styles and this one's never meet. No dependency, no framework; text
 * from the server is only ever set as text (never as HTML). window.Nudge.refresh() reloads;
 * window.Nudge.setToken(t) swaps the token (a single-page app's new session).
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) return;
  var data = script.dataset || {};
  var api = (data.api || new URL(script.src, location.href).origin + "/v1").replace(/\/+$/, "");
  var key = data.key || "";
  var token = data.token || "";
  var ready = false;

  var STYLE =
    ":host{all:initial}" +
    ".panel{font:14px/1.4 system-ui,sans-serif;color:#1f2933;background:#fff;border:1px solid #d9e2ec;" +
    "border-radius:10px;box-shadow:0 6px 24px rgba(0,0,0,.12);padding:14px;width:320px;max-width:90vw}" +
    ".fixed{position:fixed;right:16px;bottom:16px;z-index:2147483000;max-height:80vh;overflow:auto}" +
    "h2{font-size:15px;margin:0 0 8px}h3{font-size:14px;margin:0 0 4px}" +
    ".bar{height:6px;background:#e4e7eb;border-radius:3px;margin:4px 0 8px}" +
    ".bar>span{display:block;height:6px;background:#3e7bfa;border-radius:3px}" +
    "ul{list-style:none;margin:0 0 12px;padding:0}li{padding:2px 0}li.done{color:#7b8794}" +
    "li.next{font-weight:600}.msg{border-top:1px solid #e4e7eb;padding:10px 0 4px;position:relative}" +
    "p{margin:0 0 8px}button,a.cta{font:inherit;border:1px solid #3e7bfa;background:#fff;color:#3e7bfa;" +
    "border-radius:6px;padding:4px 10px;margin:0 6px 6px 0;cursor:pointer;text-decoration:none;" +
    "display:inline-block}button.dismiss{position:absolute;top:6px;right:0;border:none;color:#7b8794;" +
    "padding:0 4px;margin:0}input{font:inherit;width:100%;box-sizing:border-box;margin:0 0 6px;" +
    "padding:4px}.thanks{color:#2f8132}.error{color:#c81e1e}";

  var host = document.createElement("div");
  host.setAttribute("data-nudge", "");
  var root = host.attachShadow({ mode: "open" });
  var style = document.createElement("style");
  style.textContent = STYLE;
  var panel = document.createElement("div");
  root.appendChild(style);
  root.appendChild(panel);

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (name === "text") node.textContent = attrs[name];
      else if (name === "class") node.className = attrs[name];
      else node.setAttribute(name, attrs[name]);
    });
    (children || []).forEach(function (child) {
      if (child) node.appendChild(child);
    });
    return node;
  }

  function call(method, path, body) {
    var init = {
      method: method,
      headers: { Authorization: "Bearer " + key, "X-Nudge-User-Token": token },
      credentials: "omit",
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(api + path, init).then(function (response) {
      return response.json().then(function (json) {
        if (!response.ok) {
          var first = (json.errors || [])[0] || {};
          throw new Error(first.message || "HTTP " + response.status);
        }
        return json;
      });
    });
  }

  function renderChecklist(checklist) {
    if (!checklist || !checklist.total || checklist.done === checklist.total) return null;
    var percent = Math.round(checklist.progress * 100);
    var bar = el("div", { class: "bar", role: "progressbar", "aria-valuenow": String(percent) }, [
      el("span", { style: "width:" + percent + "%" }),
    ]);
    var items = checklist.items.map(function (item) {
      var cls = item.done ? "done" : item.milestone === checklist.next ? "next" : "";
      return el("li", { class: cls, "data-milestone": item.milestone, text: (item.done ? "\u2713 " : "\u25cb ") + item.description });
    });
    return el("section", { class: "checklist" }, [
      el("h2", { text: "Getting started \u2014 " + checklist.done + " of " + checklist.total }),
      bar,
      el("ul", {}, items),
    ]);
  }

  function safeLink(link) {
    return typeof link === "string" && /^https?:\/\//i.test(link) ? link : null;
  }

  function renderSurvey(message, box) {
    var survey = message.survey;
    var form = el("div", { class: "survey" }, [el("p", { class: "question", text: survey.question })]);
    function send(answer) {
      call("POST", "/inbox/" + encodeURIComponent(message.message_id) + "/answer", { answer: answer })
        .then(function () {
          form.replaceChildren(el("p", { class: "thanks", text: "Thanks for telling us!" }));
        })
        .catch(function (error) {
          form.appendChild(el("p", { class: "error", text: error.message }));
        });
    }
    survey.choices.forEach(function (choice) {
      var label = (survey.labels && survey.labels[choice]) || choice;
      var button = el("button", { type: "button", class: "choice", "data-choice": choice, text: label });
      button.addEventListener("click", function () {
        send(choice);
      });
      form.appendChild(button);
    });
    if (survey.free_text) {
      var input = el("input", { type: "text", maxlength: "100", placeholder: "Something else?" });
      var submit = el("button", { type: "button", class: "submit", text: "Send" });
      submit.addEventListener("click", function () {
        if (input.value.trim()) send(input.value.trim());
      });
      form.appendChild(input);
      form.appendChild(submit);
    }
    box.appendChild(form);
  }

  function act(message, action) {
    return call("POST", "/inbox/" + encodeURIComponent(message.message_id), { action: action }).catch(function () {});
  }

  function renderMessage(message) {
    var box = el("article", { class: "msg", "data-message": message.message_id }, [
      el("h3", { text: message.title }),
      el("p", { text: message.body }),
    ]);
    var dismiss = el("button", { type: "button", class: "dismiss", "aria-label": "Dismiss", text: "\u00d7" });
    dismiss.addEventListener("click", function () {
      act(message, "dismissed");
      box.remove();
    });
    box.appendChild(dismiss);
    if (message.survey && message.status !== "answered") {
      renderSurvey(message, box);
    } else if (safeLink(message.link)) {
      var cta = el("a", { class: "cta", href: safeLink(message.link), rel: "noopener", text: "Open" });
      cta.addEventListener("click", function () {
        act(message, "clicked");
      });
      box.appendChild(cta);
    }
    if (message.status === "new") act(message, "seen");
    return box;
  }

  function render(checklist, messages) {
    var parts = [renderChecklist(checklist)];
    if (messages.length) {
      parts.push(el("section", { class: "inbox" }, messages.map(renderMessage)));
    }
    panel.replaceChildren.apply(panel, parts.filter(Boolean));
    host.hidden = panel.childNodes.length === 0;
  }

  function refresh() {
    if (!key || !token) return Promise.resolve();
    return Promise.all([call("GET", "/checklist"), call("GET", "/inbox")])
      .then(function (answers) {
        render(answers[0].checklist, answers[1].messages || []);
        ready = true;
        host.setAttribute("data-ready", "");
      })
      .catch(function (error) {
        host.setAttribute("data-error", error.message);
      });
  }

  function mount() {
    var target = data.target ? document.querySelector(data.target) : null;
    if (target) {
      panel.className = "panel";
      target.appendChild(host);
    } else {
      panel.className = "panel fixed";
      document.body.appendChild(host);
    }
    refresh();
  }

  window.Nudge = {
    refresh: refresh,
    setToken: function (value) {
      token = value;
      return refresh();
    },
    get ready() {
      return ready;
    },
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mount);
  else mount();
})();
