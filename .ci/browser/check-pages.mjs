// Renders every page of the built book in headless Chromium and checks what a
// reader would see: every image loads, the console stays free of errors, and
// at a 1280-pixel window nothing scrolls sideways except code blocks.
// Screenshots one page in the light theme and one in a dark theme.
//
//   node .ci/browser/check-pages.mjs [BOOK_DIR] [ARTIFACTS_DIR]
//
// BOOK_DIR defaults to target/book, ARTIFACTS_DIR to target/ci-artifacts.
// CHROMIUM overrides the browser (default /usr/bin/chromium).

import { createServer } from "node:http";
import { readFile, readdir, mkdir, stat, mkdtemp } from "node:fs/promises";
import { join, extname, resolve, relative } from "node:path";
import { tmpdir } from "node:os";
import { chromium } from "playwright-core";

const bookDir = resolve(process.argv[2] ?? "target/book");
const artifacts = resolve(process.argv[3] ?? "target/ci-artifacts");
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const WIDTH = 1280;
const HEIGHT = 900;
const SCREENSHOT_PAGE = "ch1-tasks.html";

const TYPES = {
  ".html": "text/html; charset=utf-8", ".css": "text/css", ".js": "text/javascript",
  ".svg": "image/svg+xml", ".png": "image/png", ".json": "application/json",
  ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf", ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
};

// A static file server on a loopback port: the pages load their scripts and
// the search index the way `mdbook serve` would serve them.
function serve(root) {
  const server = createServer(async (request, response) => {
    let path = decodeURIComponent(new URL(request.url, "http://x").pathname);
    if (path.endsWith("/")) path += "index.html";
    const file = join(root, path);
    if (!file.startsWith(root)) { response.writeHead(403).end(); return; }
    try {
      const body = await readFile(file);
      response.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
      response.end(body);
    } catch {
      response.writeHead(404).end("not found");
    }
  });
  return new Promise((done) => server.listen(0, "127.0.0.1", () => done(server)));
}

async function pages(root) {
  const found = [];
  for (const entry of await readdir(root, { recursive: true })) {
    if (!entry.endsWith(".html")) continue;
    if (["print.html", "toc.html", "404.html"].includes(entry)) continue;
    found.push(entry);
  }
  return found.sort();
}

// Runs in the page: elements that make the page, or a block that is not
// code, scroll sideways.
function sidewaysScrollers() {
  const problems = [];
  const root = document.scrollingElement;
  if (root.scrollWidth > root.clientWidth + 1) {
    problems.push(`the page is ${root.scrollWidth}px wide in a ${root.clientWidth}px window`);
  }
  const isCode = (element) => element.closest("pre, code, .hljs");
  for (const element of document.querySelectorAll("main *")) {
    if (isCode(element)) continue;
    const style = getComputedStyle(element);
    if (!["auto", "scroll"].includes(style.overflowX)) continue;
    if (element.scrollWidth > element.clientWidth + 1) {
      const label = element.tagName.toLowerCase() + (element.className ? `.${element.className}` : "");
      const text = element.textContent.trim().slice(0, 60).replace(/\s+/g, " ");
      problems.push(`${label} scrolls sideways (${element.scrollWidth}px in ${element.clientWidth}px): "${text}…"`);
    }
  }
  return problems;
}

function brokenImages() {
  return [...document.images]
    .filter((image) => !image.complete || image.naturalWidth === 0)
    .map((image) => `image did not load: ${image.getAttribute("src")}`);
}

async function main() {
  await stat(join(bookDir, "index.html"));
  await mkdir(artifacts, { recursive: true });
  const server = await serve(bookDir);
  const origin = `http://127.0.0.1:${server.address().port}`;
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run",
    ],
  });
  let failures = 0;
  try {
    const context = await browser.newContext({ viewport: { width: WIDTH, height: HEIGHT } });
    const list = await pages(bookDir);
    for (const name of list) {
      const page = await context.newPage();
      const problems = [];
      page.on("console", (message) => {
        if (message.type() === "error") problems.push(`console error: ${message.text()}`);
      });
      page.on("pageerror", (error) => problems.push(`script error: ${error.message}`));
      page.on("requestfailed", (request) => problems.push(`request failed: ${request.url()}`));
      page.on("response", (response) => {
        if (response.status() >= 400) problems.push(`HTTP ${response.status()}: ${response.url()}`);
      });
      await page.goto(`${origin}/${name}`, { waitUntil: "load" });
      await page.waitForLoadState("networkidle");
      problems.push(...(await page.evaluate(brokenImages)));
      problems.push(...(await page.evaluate(sidewaysScrollers)));
      if (problems.length) {
        failures += 1;
        console.log(`FAIL ${name}`);
        for (const problem of problems) console.log(`     ${problem}`);
      } else {
        console.log(`ok   ${name}`);
      }
      await page.close();
    }
    for (const [theme, file] of [["light", "light"], ["navy", "dark"]]) {
      const themed = await browser.newContext({ viewport: { width: WIDTH, height: HEIGHT } });
      await themed.addInitScript((value) => localStorage.setItem("mdbook-theme", value), theme);
      const page = await themed.newPage();
      await page.goto(`${origin}/${SCREENSHOT_PAGE}`, { waitUntil: "networkidle" });
      const path = join(artifacts, `${SCREENSHOT_PAGE.replace(".html", "")}-${file}.png`);
      await page.screenshot({ path });
      console.log(`screenshot (${theme} theme): ${relative(process.cwd(), path)}`);
      await themed.close();
    }
    console.log(`browser: ${list.length} pages, ${failures} with problems`);
  } finally {
    await browser.close();
    server.close();
  }
  process.exit(failures ? 1 : 0);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
