// Launches headless Chromium (Debian's, or CHROMIUM) through playwright-core, with the flags
// that keep it off the network this machine does not have. Shared by the drivers here.
const { chromium } = require("playwright-core");

exports.launch = () =>
  chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
