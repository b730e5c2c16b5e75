extension ConsoleAssets {
    /// The console's script (an ES module): signs in, draws the views from the REST API, follows
    /// `/events` and redraws what changed, and shows the API's own errors next to the field they
    /// name. Text from the API is always set as text, never as markup.
    static let script = #"""
        const TOKEN_KEY = "dem.console.token";
        const PAGE = 100;
        const state = { token: sessionStorage.getItem(TOKEN_KEY), who: null, stream: null, redraw: null, timer: null, events: [] };
        const $ = (id) => document.getElementById(id);

        // h("tag", {attr: value, onclick: fn}, children...): an element; strings become text.
        function h(tag, attrs, ...children) {
          const node = document.createElement(tag);
          for (const [key, value] of Object.entries(attrs || {})) {
            if (value === null || value === undefined || value === false) continue;
            if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
            else if (key === "text") node.textContent = value;
            else node.setAttribute(key, value === true ? "" : value);
          }
          for (const child of children.flat()) {
            if (child === null || child === undefined || child === false) continue;
            node.append(child instanceof Node ? child : document.createTextNode(String(child)));
          }
          return node;
        }
        const enc = encodeURIComponent;
        const readOnly = () => state.who && state.who.Role !== "admin";
        const READ_ONLY = "Read-only token: changes need an admin token";

        class APIError extends Error {
          constructor(status, body) {
            super(body && body.message ? body.message : "dem answered " + status);
            this.status = status; this.field = body && body.field;
          }
        }

        async function api(method, path, body) {
          const headers = { Authorization: "Bearer " + state.token, Accept: "application/json" };
          if (body !== undefined) headers["Content-Type"] = "application/json";
          const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
          const text = await response.text();
          let json = null;
          try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
          if (response.status === 401 && path !== "/dem/whoami") { signOut("dem no longer takes this token: " + (json && json.message || "401")); throw new APIError(401, json); }
          if (!response.ok) throw new APIError(response.status, json);
          return json;
        }

        function notice(text, isError) {
          const box = $("notice");
          box.textContent = text || "";
          box.className = "notice" + (isError ? " error" : "");
        }

        // A button that acts; disabled for a read-only token, saying why.
        function action(label, run, opts) {
          const o = opts || {};
          const button = h("button", { type: o.submit ? "submit" : "button", class: o.kind || null }, label);
          if (readOnly() && !o.read) {
            button.disabled = true;
            button.title = READ_ONLY;
            button.setAttribute("aria-description", READ_ONLY);
          } else if (!o.submit) {
            button.addEventListener("click", async () => {
              if (o.confirm && !window.confirm(o.confirm)) return;
              button.disabled = true;
              try { await run(); } catch (e) { notice(e.message, true); } finally { button.disabled = false; }
            });
          }
          return button;
        }

        // A form of labelled fields; on submit, `send(values)`; the API's error goes next to the
        // field it names, or under the form.
        let formCount = 0;
        function form(title, fields, submitLabel, send) {
          const id = "f" + (++formCount);
          const message = h("p", { class: "error", role: "alert" });
          const inputs = {};
          const body = fields.map((f) => {
            const inputId = id + "-" + f.name;
            let input;
            if (f.options) {
              input = h("select", { id: inputId, name: f.name }, f.options.map((o) => h("option", { value: o.value ?? o }, o.label ?? o)));
            } else {
              input = h("input", { id: inputId, name: f.name, type: f.type || "text", placeholder: f.placeholder || null, value: f.value ?? null, required: f.required || null });
            }
            if (f.type === "checkbox") { input.value = "1"; if (f.checked) input.checked = true; }
            inputs[f.name] = input;
            const error = h("span", { class: "field-error", id: inputId + "-error", "data-field": f.field || f.name });
            input.setAttribute("aria-describedby", error.id);
            return h("div", {}, h("label", { for: inputId }, f.label), input, error);
          });
          const submit = action(submitLabel, null, { submit: true });
          const node = h("form", { class: "inline", "aria-label": title, novalidate: true }, body, submit, message);
          node.addEventListener("submit", async (event) => {
            event.preventDefault();
            if (readOnly()) return;
            for (const e of node.querySelectorAll(".field-error")) e.textContent = "";
            message.textContent = "";
            const values = {};
            for (const [name, input] of Object.entries(inputs)) values[name] = input.type === "checkbox" ? input.checked : input.value.trim();
            submit.disabled = true;
            try {
              await send(values);
              node.reset();
              notice(title + ": done");
              await redraw();
            } catch (e) {
              const target = e.field && node.querySelector('.field-error[data-field="' + CSS.escape(e.field) + '"]');
              (target || message).textContent = e.message;
              if (target) { const input = $(target.id.replace(/-error$/, "")); if (input) input.focus(); }
            } finally { submit.disabled = false; }
          });
          return h("section", { class: "form" }, h("h3", {}, title), node);
        }

        function table(columns, rows, caption) {
          return h("div", { class: "wrap" }, h("table", {},
            caption ? h("caption", { class: "muted" }, caption) : null,
            h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
            h("tbody", {}, rows.length ? rows.map((r) => h("tr", {}, r.map((cell) => h("td", {}, cell))))
              : h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, "none")))));
        }

        // A filter box and pages of `PAGE` rows, for lists of any length.
        function pagedTable(label, columns, all, rowOf, matches) {
          const box = h("div", {});
          let page = 0, query = "";
          const filterId = "filter-" + (++formCount);
          const input = h("input", { id: filterId, type: "search", placeholder: "filter" });
          const draw = () => {
            const shown = query ? all.filter((item) => matches(item, query)) : all;
            const pages = Math.max(1, Math.ceil(shown.length / PAGE));
            page = Math.min(page, pages - 1);
            const slice = shown.slice(page * PAGE, page * PAGE + PAGE);
            box.replaceChildren(
              table(columns, slice.map(rowOf), shown.length + " of " + all.length + " " + label),
              pages > 1 ? h("div", { class: "pager" },
                h("button", { type: "button", class: "secondary", disabled: page === 0, onclick: () => { page--; draw(); } }, "Previous"),
                h("span", {}, "page " + (page + 1) + " of " + pages),
                h("button", { type: "button", class: "secondary", disabled: page >= pages - 1, onclick: () => { page++; draw(); } }, "Next")) : null);
          };
          input.addEventListener("input", () => { query = input.value.trim().toLowerCase(); page = 0; draw(); });
          draw();
          return h("div", {}, h("label", { for: filterId }, "Filter " + label), input, box);
        }

        const link = (href, text) => h("a", { href }, text);
        const targetLink = (alias) => link("#/target/" + enc(alias), alias);
        const hostLink = (alias) => link("#/host/" + enc(alias), alias);
        const stateCell = (s) => h("span", { class: "state-" + (s || "unknown") }, s || "unknown");

        async function model() {
          const [fabric, states] = await Promise.all([api("GET", "/dem/config"), api("GET", "/dem/targets")]);
          const status = {};
          for (const t of states.Targets) status[t.Alias] = t;
          return { fabric, status };
        }

        // ---- views ----
        const views = {
          async overview() {
            const { fabric, status } = await model();
            const targets = fabric.Targets;
            const count = (s) => targets.filter((t) => (status[t.Alias] || {}).State === s).length;
            const subsystems = targets.reduce((n, t) => n + t.Subsystems.length, 0);
            const namespaces = targets.reduce((n, t) => n + t.Subsystems.reduce((m, s) => m + s.NSIDs.length, 0), 0);
            const card = (label, n, href) => h("div", { class: "card" }, h("div", { class: "count" }, String(n)), href ? link(href, label) : label);
            const attention = [];
            for (const t of targets) {
              const s = status[t.Alias] || {};
              if (s.State === "unreachable") attention.push([targetLink(t.Alias), " is unreachable: ", s.LastError || ""]);
              else if (s.State === "drifted") attention.push([targetLink(t.Alias), " has drifted: ", [...(s.Errors || []), ...(s.Drift || []).map((d) => d.Object + " " + (d.Attribute || "")), ...(s.Foreign || []).map((f) => "foreign " + f)].join("; ")]);
              if (s.Withheld) attention.push([targetLink(t.Alias), " has " + s.Withheld + " entries no host is served now"]);
              if (s.Certificate && new Date(s.Certificate.Expires) - Date.now() < 30 * 86400000) attention.push([targetLink(t.Alias), "'s certificate expires on " + s.Certificate.Expires]);
            }
            const noNQN = fabric.Hosts.filter((x) => !x.HOSTNQN);
            if (noNQN.length) attention.push([String(noNQN.length) + " hosts have no HOSTNQN and see nothing: ", ...noNQN.slice(0, 10).map((x) => [hostLink(x.Alias), " "])]);
            return [
              h("h2", {}, "Overview"),
              h("section", { "aria-labelledby": "attention" }, h("h3", { id: "attention" }, "Needs attention"),
                attention.length ? h("ul", { class: "attention" }, attention.map((a) => h("li", {}, a))) : h("p", { class: "muted" }, "Nothing: every target answers and serves what the model says.")),
              h("div", { class: "cards" },
                card("targets", targets.length, "#/targets"), card("reachable", count("reachable")), card("unreachable", count("unreachable")),
                card("drifted", count("drifted")), card("not contacted yet", count("unknown") + count("joined")),
                card("LocalMgmt (read, not managed)", targets.filter((t) => t.MgmtMode === "LocalMgmt").length),
                card("subsystems", subsystems, "#/subsystems"), card("namespaces", namespaces),
                card("hosts", fabric.Hosts.length, "#/hosts"), card("groups", fabric.Groups.length, "#/groups")),
              h("h3", {}, "Latest events"), eventList(10),
            ];
          },

          async targets() {
            const { fabric, status } = await model();
            return [
              h("h2", {}, "Targets"),
              pagedTable("targets", ["Alias", "Mode", "State", "Entries served", "Last error"], fabric.Targets,
                (t) => { const s = status[t.Alias] || {}; return [targetLink(t.Alias), t.MgmtMode, stateCell(s.State), String(s.Serving ?? 0), s.LastError || ""]; },
                (t, q) => t.Alias.toLowerCase().includes(q)),
              form("Add a target", [{ name: "Alias", label: "Alias", required: true }], "Add target",
                (v) => api("POST", "/target/" + enc(v.Alias))),
            ];
          },

          async target(alias) {
            const [t, s] = await Promise.all([api("GET", "/target/" + enc(alias)), api("GET", "/target/" + enc(alias) + "/status")]);
            const hosts = (await api("GET", "/host")).Hosts || [];
            const base = "/target/" + enc(alias);
            const subsystemBlocks = t.Subsystems.map((sub) => {
              const sbase = base + "/subsystem/" + enc(sub.SUBNQN);
              return h("section", { class: "card" },
                h("h4", {}, sub.SUBNQN),
                h("p", {}, sub.AllowAnyHost ? "Any host may use it (AllowAnyHost). " : "Hosts on its access list only. ",
                  action(sub.AllowAnyHost ? "Restrict " + sub.SUBNQN + " to its access list" : "Open " + sub.SUBNQN + " to any host",
                    () => api("PATCH", sbase, { AllowAnyHost: sub.AllowAnyHost ? 0 : 1 }).then(redraw), { kind: "secondary" })),
                table(["NSID", "Device", ""], sub.NSIDs.map((n) => [String(n.NSID), n.DevicePath || ("device " + (n.DeviceID ?? "")),
                  action("Delete namespace " + n.NSID, () => api("DELETE", sbase + "/nsid/" + n.NSID).then(redraw), { kind: "secondary", confirm: "Delete namespace " + n.NSID + " of " + sub.SUBNQN + "?" })]), "namespaces"),
                table(["Host", ""], sub.Hosts.map((x) => [hostLink(x), action("Remove " + x + " from the access list", () => api("DELETE", sbase + "/host/" + enc(x)).then(redraw), { kind: "secondary" })]), "access list"),
                form("Allow a host on " + sub.SUBNQN, [{ name: "Alias", label: "Host", options: hosts.length ? hosts : [""] }], "Allow host",
                  (v) => api("PUT", sbase + "/host", { Alias: v.Alias })),
                form("Add a namespace to " + sub.SUBNQN, [{ name: "NSID", label: "NSID", type: "number", required: true }, { name: "DevicePath", label: "Device path", placeholder: "/dev/nullb0" }], "Add namespace",
                  (v) => api("PUT", sbase + "/nsid", { NSID: Number(v.NSID), DevicePath: v.DevicePath })),
                action("Delete subsystem " + sub.SUBNQN, () => api("DELETE", sbase).then(redraw), { kind: "danger", confirm: "Delete subsystem " + sub.SUBNQN + " from target " + alias + "? Hosts lose it." }));
            });
            return [
              h("h2", {}, "Target " + alias),
              h("p", {}, t.MgmtMode, t.Interface ? " at " + (t.Interface.ADDRESS || t.Interface.TRADDR || "") + ":" + (t.Interface.PORT || t.Interface.TRSVCID || "") + (t.Interface.TLS ? " (TLS)" : "") : "", " · state ", stateCell(s.State), s.LastContact ? " · last contact " + s.LastContact : "", " · entries served " + (s.Serving ?? 0)),
              s.LastError ? h("p", { class: "error" }, "Last error: " + s.LastError) : null,
              s.Backend ? h("p", { "data-backend": s.Backend.Name }, "Backend " + s.Backend.Name + (s.Backend.Version ? " (" + s.Backend.Version + ")" : "") + (s.Backend.Location ? " at " + s.Backend.Location : "") + (s.Backend.Reachable === false ? ", not answering" : "")) : null,
              h("div", {}, action("Refresh", () => api("POST", base + "/refresh").then(redraw), { kind: "secondary" }), " ",
                action("Reconfigure", () => api("POST", base + "/reconfig").then(redraw), { kind: "secondary" }), " ",
                action("Delete target", async () => { await api("DELETE", base); location.hash = "#/targets"; }, { kind: "danger", confirm: "Delete target " + alias + " and everything on it?" })),
              (s.Drift || []).length ? [h("h3", {}, "Drift"), table(["Object", "Attribute", "Expected", "Actual"], s.Drift.map((d) => [d.Object, d.Attribute || "", d.Expected || "", d.Actual || ""]))] : null,
              (s.Foreign || []).length ? [h("h3", {}, "Left alone (not created by dem-em)"), h("ul", {}, s.Foreign.map((f) => h("li", {}, f)))] : null,
              (s.Errors || []).length ? [h("h3", {}, "Errors"), h("ul", {}, s.Errors.map((f) => h("li", { class: "error" }, f)))] : null,
              s.Certificate ? h("p", {}, "Certificate " + s.Certificate.Fingerprint + ", until " + s.Certificate.Expires) : null,
              form("How dem manages " + alias, [
                { name: "MgmtMode", label: "Mode", options: [
                  { value: "LocalMgmt", label: "LocalMgmt: read its discovery controller" },
                  { value: "OutOfBandMgmt", label: "OutOfBandMgmt: dem-em over the management network" },
                  { value: "InBandMgmt", label: "InBandMgmt: dem-em over the storage fabric" }] },
                { name: "TRTYPE", label: "TRTYPE (local, in-band)", options: ["tcp", "rdma"] },
                { name: "ADRFAM", label: "ADRFAM", options: ["ipv4", "ipv6"] },
                { name: "ADDRESS", label: "Address", field: "Interface", placeholder: "192.0.2.10" },
                { name: "PORT", label: "Port", type: "number", placeholder: "8009, 22335 or 22334" }], "Set mode",
                (v) => {
                  const body = { MgmtMode: v.MgmtMode };
                  if (v.ADDRESS) {
                    body.Interface = v.MgmtMode === "OutOfBandMgmt"
                      ? { FAMILY: v.ADRFAM, ADDRESS: v.ADDRESS, PORT: Number(v.PORT || 22334) }
                      : { TRTYPE: v.TRTYPE, ADRFAM: v.ADRFAM, TRADDR: v.ADDRESS, TRSVCID: Number(v.PORT || (v.MgmtMode === "InBandMgmt" ? 22335 : 8009)) };
                  }
                  return api("PATCH", base, body);
                }),
              h("h3", {}, "Ports"),
              table(["PORTID", "TRTYPE", "ADRFAM", "TRADDR", "TRSVCID", ""], t.PortIDs.map((p) => [String(p.PORTID), p.TRTYPE, p.ADRFAM, p.TRADDR, String(p.TRSVCID),
                action("Delete port " + p.PORTID, () => api("DELETE", base + "/portid/" + p.PORTID).then(redraw), { kind: "secondary", confirm: "Delete port " + p.PORTID + "?" })])),
              form("Add a port", [{ name: "PORTID", label: "PORTID", type: "number", required: true },
                { name: "TRTYPE", label: "TRTYPE", options: ["tcp", "rdma"] }, { name: "ADRFAM", label: "ADRFAM", options: ["ipv4", "ipv6"] },
                { name: "TRADDR", label: "TRADDR", required: true }, { name: "TRSVCID", label: "TRSVCID", type: "number", value: "4420" }], "Add port",
                (v) => api("PUT", base + "/portid", { PORTID: Number(v.PORTID), TRTYPE: v.TRTYPE, ADRFAM: v.ADRFAM, TRADDR: v.TRADDR, TRSVCID: Number(v.TRSVCID) })),
              h("h3", {}, "Subsystems"),
              subsystemBlocks.length ? subsystemBlocks : h("p", { class: "muted" }, "none"),
              form("Add a subsystem", [{ name: "SUBNQN", label: "SUBNQN", required: true, placeholder: "nqn.2024-01.io.example:s1" },
                { name: "AllowAnyHost", label: "Any host may use it", type: "checkbox" }], "Add subsystem",
                (v) => api("PUT", base + "/subsystem", { SUBNQN: v.SUBNQN, AllowAnyHost: v.AllowAnyHost ? 1 : 0 })),
              (t.NSDevices || []).length ? [h("h3", {}, "Devices the target reported"), table(["DeviceID", "Path", "Kind", "Size"], t.NSDevices.map((d) => [String(d.DeviceID), d.DevicePath || "", d.Kind || "", d.Size ? String(d.Size) : ""]))] : null,
              (t.Interfaces || []).length ? [h("h3", {}, "Interfaces the target reported"), table(["TRTYPE", "ADRFAM", "TRADDR"], t.Interfaces.map((i) => [i.TRTYPE || "", i.ADRFAM || "", i.TRADDR || ""]))] : null,
            ];
          },

          async subsystems() {
            const { fabric } = await model();
            const all = fabric.Targets.flatMap((t) => t.Subsystems.map((s) => ({ target: t.Alias, s })));
            return [h("h2", {}, "Subsystems"),
              pagedTable("subsystems", ["Target", "SUBNQN", "Any host", "Namespaces", "Access list"], all,
                (x) => [targetLink(x.target), x.s.SUBNQN, x.s.AllowAnyHost ? "yes" : "no", String(x.s.NSIDs.length), x.s.Hosts.join(", ")],
                (x, q) => x.s.SUBNQN.toLowerCase().includes(q) || x.target.toLowerCase().includes(q)),
              h("p", { class: "muted" }, "Subsystems are added on their target's page.")];
          },

          async hosts() {
            const { fabric } = await model();
            return [h("h2", {}, "Hosts"),
              pagedTable("hosts", ["Alias", "HOSTNQN"], fabric.Hosts, (x) => [hostLink(x.Alias), x.HOSTNQN || "(none)"],
                (x, q) => x.Alias.toLowerCase().includes(q) || (x.HOSTNQN || "").toLowerCase().includes(q)),
              form("Add a host", [{ name: "Alias", label: "Alias", required: true }, { name: "HOSTNQN", label: "HOSTNQN", placeholder: "nqn.2014-08.org.nvmexpress:uuid:…" }], "Add host",
                (v) => api("PUT", "/host", v.HOSTNQN ? { Alias: v.Alias, HOSTNQN: v.HOSTNQN } : { Alias: v.Alias }))];
          },

          async host(alias) {
            const host = await api("GET", "/host/" + enc(alias));
            let page = null, pageError = null;
            try { page = await api("GET", "/host/" + enc(alias) + "/logpage"); } catch (e) { pageError = e.message; }
            return [
              h("h2", {}, "Host " + alias),
              h("p", {}, "HOSTNQN: " + (host.HOSTNQN || "(none)")),
              host.Shared || host.Restricted ? h("p", {}, "May use " + ((host.Shared || []).length + (host.Restricted || []).length) + " subsystems.") : null,
              h("h3", { id: "sees" }, "What this host sees"),
              pageError ? h("p", { class: "error" }, pageError) : [
                h("p", {}, "Its discovery log page as dem serves it now (GENCTR " + page.genctr + "):"),
                table(["Subtype", "SUBNQN", "TRADDR", "TRSVCID", "PORTID", "Target", "Why it sees it"],
                  page.records.map((r) => [r.subtype, r.subnqn, r.traddr, r.trsvcid, String(r.portid), r.target ? targetLink(r.target) : "", r.reason || ""]), "entries"),
                page.withheld.length ? [h("h3", {}, "Withheld now"), table(["SUBNQN", "TRADDR", "TRSVCID", "Target", "Why"], page.withheld.map((r) => [r.subnqn, r.traddr, r.trsvcid, targetLink(r.target), r.reason]))] : null,
              ],
              action("Delete host " + alias, async () => { await api("DELETE", "/host/" + enc(alias)); location.hash = "#/hosts"; }, { kind: "danger", confirm: "Delete host " + alias + "? It leaves every access list and group." }),
            ];
          },

          async groups() {
            const { fabric } = await model();
            return [h("h2", {}, "Groups"),
              h("p", { class: "muted" }, "A target in a group is visible only to the hosts of its groups."),
              table(["Group", "Targets", "Hosts", ""], fabric.Groups.map((g) => [g.Name,
                h("span", {}, (g.Targets || []).map((t) => [targetLink(t), " "])),
                h("span", {}, (g.Hosts || []).slice(0, 50).map((x) => [hostLink(x), " "]), (g.Hosts || []).length > 50 ? "and " + ((g.Hosts || []).length - 50) + " more" : ""),
                action("Delete group " + g.Name, () => api("DELETE", "/group/" + enc(g.Name)).then(redraw), { kind: "secondary", confirm: "Delete group " + g.Name + "?" })])),
              form("Add a group", [{ name: "Name", label: "Name", required: true }], "Add group", (v) => api("POST", "/group/" + enc(v.Name))),
              fabric.Groups.length ? [
                form("Put a target in a group", [{ name: "Group", label: "Group", options: fabric.Groups.map((g) => g.Name) }, { name: "Alias", label: "Target", options: fabric.Targets.map((t) => t.Alias) }], "Add target to group",
                  (v) => api("POST", "/group/" + enc(v.Group) + "/target/" + enc(v.Alias))),
                form("Put a host in a group", [{ name: "Group", label: "Group", options: fabric.Groups.map((g) => g.Name) }, { name: "Alias", label: "Host alias", required: true }], "Add host to group",
                  (v) => api("POST", "/group/" + enc(v.Group) + "/host/" + enc(v.Alias))),
              ] : null];
          },

          async fabric() {
            const { fabric } = await model();
            return [h("h2", {}, "The fabric"), fabricPicture(fabric)];
          },

          async events() {
            return [h("h2", {}, "Events"), h("p", { class: "muted" }, "Changes as dem publishes them on /events, newest first."), eventList(200)];
          },
        };

        // Hosts ↔ subsystems ↔ targets as SVG; with many hosts, only those matching a filter.
        function fabricPicture(fabric) {
          const box = h("div", {});
          const filterId = "fabric-filter";
          const input = h("input", { id: filterId, type: "search", placeholder: "host or subsystem" });
          const draw = () => {
            const q = input.value.trim().toLowerCase();
            const edges = [];
            const hostSet = new Set(), subSet = new Set(), targetSet = new Set();
            const groupsOfTarget = {}, groupsOfHost = {};
            for (const g of fabric.Groups) { for (const t of g.Targets || []) (groupsOfTarget[t] ||= new Set()).add(g.Name); for (const x of g.Hosts || []) (groupsOfHost[x] ||= new Set()).add(g.Name); }
            const sees = (host, t) => !groupsOfTarget[t] || [...groupsOfTarget[t]].some((g) => groupsOfHost[host] && groupsOfHost[host].has(g));
            const hosts = fabric.Hosts.map((x) => x.Alias).filter((x) => !q || x.toLowerCase().includes(q));
            for (const t of fabric.Targets) for (const s of t.Subsystems) {
              const key = t.Alias + " " + s.SUBNQN;
              const users = (s.AllowAnyHost ? hosts : s.Hosts.filter((x) => hosts.includes(x))).filter((x) => sees(x, t.Alias));
              if (q && !users.length && !s.SUBNQN.toLowerCase().includes(q)) continue;
              subSet.add(key); targetSet.add(t.Alias);
              for (const x of users) { hostSet.add(x); edges.push([x, key]); }
            }
            const limit = 100;
            if (hostSet.size > limit) { box.replaceChildren(h("p", {}, hostSet.size + " hosts match: filter to " + limit + " or fewer to draw them.")); return; }
            const hostList = [...hostSet].sort(), subList = [...subSet].sort(), targetList = [...targetSet].sort();
            // Three columns: hosts, subsystems (the label cut to fit, the whole NQN as its title),
            // targets; an edge from the end of a label to the start of the next column's.
            const row = 24, width = 1000, colX = [10, 290, 800], hostEnd = 240, subEnd = 770;
            const cut = (text, room) => text.length * 7 <= room ? text : "…" + text.slice(text.length - Math.floor(room / 7) + 1);
            const height = Math.max(hostList.length, subList.length, targetList.length, 1) * row + 40;
            const ns = "http://www.w3.org/2000/svg";
            const svg = document.createElementNS(ns, "svg");
            svg.setAttribute("viewBox", "0 0 " + width + " " + height); svg.setAttribute("width", "100%"); svg.setAttribute("role", "img");
            svg.setAttribute("aria-label", hostList.length + " hosts, " + subList.length + " subsystems, " + targetList.length + " targets");
            const el = (name, attrs, text, title) => {
              const n = document.createElementNS(ns, name);
              for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
              if (text) n.textContent = text;
              if (title) { const t = document.createElementNS(ns, "title"); t.textContent = title; n.append(t); }
              svg.append(n);
              return n;
            };
            const y = (list, item) => 30 + list.indexOf(item) * row;
            el("text", { x: colX[0], y: 14 }, "Hosts"); el("text", { x: colX[1], y: 14 }, "Subsystems"); el("text", { x: colX[2], y: 14 }, "Targets");
            for (const [x, key] of edges) el("path", { class: "edge", d: "M" + hostEnd + " " + (y(hostList, x) - 4) + " L" + (colX[1] - 6) + " " + (y(subList, key) - 4) });
            for (const key of subList) { const t = key.split(" ")[0]; el("path", { class: "edge", d: "M" + subEnd + " " + (y(subList, key) - 4) + " L" + (colX[2] - 6) + " " + (y(targetList, t) - 4) }); }
            hostList.forEach((x) => el("text", { x: colX[0], y: y(hostList, x) }, cut(x, hostEnd - colX[0] - 6), x));
            subList.forEach((key) => el("text", { x: colX[1], y: y(subList, key) }, cut(key.split(" ")[1], subEnd - colX[1] - 6), key.split(" ")[1]));
            targetList.forEach((t) => el("text", { x: colX[2], y: y(targetList, t) }, cut(t, width - colX[2] - 6), t));
            box.replaceChildren(svg);
          };
          input.addEventListener("input", draw);
          draw();
          return h("div", {}, h("label", { for: filterId }, "Filter the picture"), input, box);
        }

        function eventList(n) {
          return h("ul", { class: "events", "aria-label": "events", "data-events": String(n) },
            state.events.slice(0, n).map((e) => h("li", {}, e.time + "  " + e.action + "  " + e.path)));
        }

        function refreshEventLists() {
          for (const list of document.querySelectorAll("[data-events]")) list.replaceWith(eventList(Number(list.dataset.events)));
        }

        // ---- the page ----
        function route() {
          const [, name, ...rest] = (location.hash || "#/overview").split("/");
          return { name: views[name] ? name : "overview", arg: rest.length ? decodeURIComponent(rest.join("/")) : undefined };
        }

        async function redraw() {
          if (!state.who) return;
          const { name, arg } = route();
          for (const a of document.querySelectorAll("nav a")) {
            if (a.getAttribute("href") === "#/" + (name === "target" ? "targets" : name === "host" ? "hosts" : name)) a.setAttribute("aria-current", "page");
            else a.removeAttribute("aria-current");
          }
          const view = $("view");
          // A form being filled in is not redrawn under the user's hands.
          const active = document.activeElement;
          if (state.redrawing === name && active && view.contains(active) && (active.tagName === "INPUT" || active.tagName === "SELECT") && active.value) {
            state.pending = true;
            return;
          }
          state.pending = false;
          try {
            const content = await views[name](arg);
            state.redrawing = name;
            view.replaceChildren(...[readOnly() ? h("p", { class: "readonly" }, "Signed in with a read-only token: you can look, not change.") : null, content].flat(3).filter(Boolean));
            document.title = "DEM · " + name + (arg ? " " + arg : "");
            // When the view is painted and takes input (scripts/console/bench.py reads it).
            requestAnimationFrame(() => setTimeout(() => performance.mark("dem-drawn-" + name), 0));
          } catch (e) {
            if (e.status !== 401) view.replaceChildren(h("h2", {}, "Cannot show " + name), h("p", { class: "error" }, e.message));
          }
        }

        // Follows /events (fetch: EventSource cannot send the token) and redraws when the model changes.
        async function follow() {
          const controller = new AbortController();
          state.stream = controller;
          while (!controller.signal.aborted && state.token) {
            try {
              const response = await fetch("/events", { headers: { Authorization: "Bearer " + state.token }, signal: controller.signal });
              if (!response.ok) throw new Error("events: " + response.status);
              const reader = response.body.getReader();
              const decoder = new TextDecoder();
              let buffer = "";
              for (;;) {
                const { value, done } = await reader.read();
                if (done) break;
                buffer += decoder.decode(value, { stream: true });
                let end;
                while ((end = buffer.indexOf("\n\n")) >= 0) {
                  const block = buffer.slice(0, end); buffer = buffer.slice(end + 2);
                  const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
                  if (!data) continue;
                  try { received(JSON.parse(data)); } catch (e) { /* not an event */ }
                }
              }
            } catch (e) {
              if (controller.signal.aborted) return;
            }
            await new Promise((r) => setTimeout(r, 2000));
          }
        }

        function received(event) {
          state.events.unshift(event);
          state.events.length = Math.min(state.events.length, 500);
          refreshEventLists();
          if (event.action === "audited" || event.path.endsWith("/status") && route().name === "events") return;
          clearTimeout(state.timer);
          state.timer = setTimeout(redraw, 250);
        }

        async function signIn(token) {
          state.token = token;
          try {
            state.who = await api("GET", "/dem/whoami");
          } catch (e) {
            state.token = null; state.who = null;
            throw e;
          }
          sessionStorage.setItem(TOKEN_KEY, token);
          $("sign-in").hidden = true; $("view").hidden = false; $("nav").hidden = false; $("who").hidden = false;
          $("who-name").textContent = state.who.Name + (state.who.Role === "admin" ? " (admin)" : " (read-only)");
          follow();
          await redraw();
          $("main").focus();
        }

        function signOut(message) {
          if (state.stream) state.stream.abort();
          sessionStorage.removeItem(TOKEN_KEY);
          state.token = null; state.who = null; state.events = [];
          $("view").replaceChildren(); $("view").hidden = true; $("nav").hidden = true; $("who").hidden = true;
          $("sign-in").hidden = false;
          $("sign-in-error").textContent = message || "";
          $("token").value = "";
          $("token").focus();
        }

        $("sign-in-form").addEventListener("submit", async (event) => {
          event.preventDefault();
          $("sign-in-error").textContent = "";
          const token = $("token").value.trim();
          if (!token) { $("sign-in-error").textContent = "Type a token."; return; }
          try { await signIn(token); $("token").value = ""; }
          catch (e) { $("sign-in-error").textContent = e.status === 401 ? "dem refused this token: " + e.message : e.message; }
        });
        $("sign-out").addEventListener("click", () => signOut("Signed out."));
        // A redraw held back while a field was being filled in happens when it is left.
        $("view").addEventListener("focusout", () => { if (state.pending) setTimeout(redraw, 50); });
        window.addEventListener("hashchange", () => { state.redrawing = null; notice(""); redraw().then(() => $("main").focus()); });
        if (state.token) signIn(state.token).catch(() => signOut("Sign in again."));
        else $("token").focus();
        """#
}
