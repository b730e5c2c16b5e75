extension ConsoleAssets {
    /// The console's page: the sign-in form, then the views the script draws.
    static let page = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>DEM console</title>
        <link rel="icon" href="data:,">
        <link rel="stylesheet" href="/console/app.css">
        <script type="module" src="/console/app.js"></script>
        </head>
        <body>
        <a class="skip" href="#main">Skip to the content</a>
        <header class="top">
          <h1 class="brand">DEM</h1>
          <nav id="nav" aria-label="Views" hidden>
            <a href="#/overview">Overview</a>
            <a href="#/targets">Targets</a>
            <a href="#/subsystems">Subsystems</a>
            <a href="#/hosts">Hosts</a>
            <a href="#/groups">Groups</a>
            <a href="#/fabric">Fabric</a>
            <a href="#/events">Events</a>
          </nav>
          <div id="who" class="who" hidden>
            <span id="who-name"></span>
            <button type="button" id="sign-out">Sign out</button>
          </div>
        </header>
        <div id="notice" class="notice" role="status" aria-live="polite"></div>
        <main id="main" tabindex="-1">
          <section id="sign-in" class="sign-in" aria-labelledby="sign-in-title">
            <h2 id="sign-in-title">Sign in</h2>
            <p>Sign in with an API token: dem names the admin token's file at start
            (<code>admin.token</code> in its data directory); <code>dem-cli add token NAME read</code>
            makes a read-only one.</p>
            <form id="sign-in-form" novalidate>
              <label for="token">API token</label>
              <input id="token" name="token" type="password" autocomplete="current-password" spellcheck="false" required>
              <button type="submit">Sign in</button>
              <p id="sign-in-error" class="error" role="alert"></p>
            </form>
          </section>
          <div id="view" hidden></div>
        </main>
        </body>
        </html>
        """#

    /// The console's style: plain, readable at 1280x800 and on a narrow screen, contrast of at
    /// least 4.5:1 for text.
    static let style = #"""
        :root { --ink: #1b1f24; --muted: #4a5360; --line: #c9d1d9; --back: #ffffff; --panel: #f4f6f8;
          --accent: #0b5cad; --bad: #a4161a; --warn: #7a4d00; --good: #1a6b2f; font-family: system-ui, sans-serif; }
        * { box-sizing: border-box; }
        body { margin: 0; color: var(--ink); background: var(--back); line-height: 1.4; }
        a { color: var(--accent); }
        .skip { position: absolute; left: -999px; }
        .skip:focus { left: 8px; top: 8px; background: var(--back); padding: 4px; z-index: 10; }
        .top { display: flex; flex-wrap: wrap; align-items: center; gap: 12px; padding: 8px 16px;
          border-bottom: 1px solid var(--line); background: var(--panel); }
        .brand { font-size: 1.2rem; margin: 0 12px 0 0; }
        nav { display: flex; flex-wrap: wrap; gap: 4px; }
        nav a { padding: 6px 10px; border-radius: 4px; text-decoration: none; }
        nav a[aria-current="page"] { background: var(--accent); color: #fff; }
        .who { margin-left: auto; display: flex; gap: 8px; align-items: center; }
        main { padding: 16px; max-width: 1400px; margin: 0 auto; }
        main:focus { outline: none; }
        h2 { margin-top: 0; }
        .notice { min-height: 0; margin: 0 16px; }
        .notice:not(:empty) { margin-top: 8px; padding: 8px 12px; border: 1px solid var(--line); border-radius: 4px; }
        .error { color: var(--bad); }
        .field-error { color: var(--bad); display: block; font-size: 0.9rem; }
        .readonly { background: #fff4d6; border: 1px solid #d9b44a; padding: 6px 10px; border-radius: 4px; }
        .cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 12px; margin-bottom: 16px; }
        .card { border: 1px solid var(--line); border-radius: 6px; padding: 10px; background: var(--panel); }
        .card .count { font-size: 1.8rem; font-weight: 600; }
        table { border-collapse: collapse; width: 100%; margin: 8px 0 16px; }
        th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
        th { background: var(--panel); }
        .wrap { overflow-x: auto; }
        .state-reachable { color: var(--good); }
        .state-unreachable { color: var(--bad); font-weight: 600; }
        .state-drifted { color: var(--warn); font-weight: 600; }
        form.inline { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-end; margin: 8px 0 16px; }
        form.inline > div { display: flex; flex-direction: column; }
        label { font-size: 0.9rem; color: var(--muted); }
        input, select, button { font: inherit; padding: 5px 8px; border: 1px solid #8a96a3; border-radius: 4px; }
        button { background: var(--accent); color: #fff; border-color: var(--accent); cursor: pointer; }
        button.secondary { background: var(--back); color: var(--accent); }
        button.danger { background: var(--bad); border-color: var(--bad); }
        button:disabled { background: #d0d5db; color: #3d444d; border-color: #b0b7bf; cursor: not-allowed; }
        :focus-visible { outline: 3px solid #f0a500; outline-offset: 2px; }
        .sign-in { max-width: 460px; }
        .sign-in form { display: flex; flex-direction: column; gap: 8px; }
        .pager { display: flex; gap: 8px; align-items: center; }
        input[type="search"] { margin: 0 0 8px 8px; }
        .events { list-style: none; padding: 0; margin: 0; font-family: ui-monospace, monospace; font-size: 0.9rem; }
        .events li { padding: 2px 0; border-bottom: 1px dotted var(--line); }
        .attention li { margin-bottom: 4px; }
        .muted { color: var(--muted); }
        svg text { font-size: 12px; fill: var(--ink); }
        svg .edge { stroke: #8a96a3; stroke-width: 1; fill: none; }
        svg .node rect { fill: var(--panel); stroke: var(--muted); }
        @media (max-width: 700px) { main { padding: 8px; } th, td { padding: 4px; } .who { margin-left: 0; } }
        """#
}
