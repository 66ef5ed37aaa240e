"""The supervisor console in a real headless Chromium, against the real service and broker."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import struct
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Route, async_playwright, expect

from citywatch.app.service import Service
from citywatch.geo import offset_m
from citywatch.rules.patrols.grids import Grids
from citywatch.simulate.grid import make_district, write_geojson
from tests.api.service import CITY
from tests.api.service import TOKENS as API_TOKENS
from tests.helpers import Publisher, connected, settings_for, shift_start
from tests.services import Influx, Mosquitto

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path("/tmp/console-shots")
TOKENS = API_TOKENS[:2]  # the duty desk, and lead-7 who sees grid 321202001 only
PATROLS = {
    "offline": {"after": "1s"},
    "gps_lost": {"after": "30s"},
    "out_of_grid": {"after": "1s", "buffer": "20m"},
}
CASES = {"warn_at": 0.5, "calendar": "natural", "limits": {"filing": "2s"}}
NOTE = "已电话联系 called the officer"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@dataclasses.dataclass
class Running:
    svc: Service
    base: str
    grids: Grids
    shots: Path

    async def shot(self, page: Page, name: str) -> None:
        path = self.shots / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        SHOTS.mkdir(exist_ok=True)
        shutil.copy(path, SHOTS / path.name)


@contextlib.asynccontextmanager
async def running(
    mosquitto: Mosquitto, influx: Influx, db: str, tmp_path: Path, **api: Any
) -> AsyncIterator[Running]:
    fc = make_district()
    grids_file = tmp_path / "grids.geojson"
    write_geojson(fc, grids_file)
    settings = settings_for(
        mosquitto.url,
        influx.url,
        db,
        tmp_path / "var",
        patrols=PATROLS,
        cases=CASES,
        api={"rate_limit": 1000.0, "rate_burst": 1000, **api},
    )
    settings = dataclasses.replace(settings, grids_file=str(grids_file))
    shots = tmp_path / "shots"
    shots.mkdir()
    async with connected(settings, ["collector", "rules"]) as svc:
        yield Running(svc, f"http://127.0.0.1:{svc.http_port}", Grids.from_geojson(fc), shots)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        await b.close()


class Requests:
    """Every URL a page asks for, HTTP and WebSocket alike, and the page's uncaught errors."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.errors: list[str] = []

    def watch(self, page: Page) -> Page:
        page.on("request", lambda r: self.urls.append(r.url))
        page.on("websocket", lambda ws: self.urls.append(ws.url))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        return page

    def off_host(self, base: str) -> list[str]:
        ws = base.replace("http://", "ws://")
        return [u for u in self.urls if not (u.startswith(base + "/") or u.startswith(ws + "/"))]


async def sign_in(page: Page, token: str) -> None:
    await page.get_by_label("访问令牌").fill(token)
    await page.get_by_role("button", name="登录").click()
    await expect(page.locator("#console")).to_be_visible()
    await expect(page.locator("#conn")).to_have_attribute("data-state", "connected")


def shift(officer: str, device: str, grid: str) -> tuple[str, dict[str, Any]]:
    return f"citywatch/{CITY}/officers/{officer}/shift", shift_start(device, "lead-7", grid)


def fix(device: str, at: tuple[float, float], east: float = 0.0) -> tuple[str, dict[str, Any]]:
    lon, lat = offset_m(*at, east, 0.0)
    doc = {"ts": time.time(), "lat": lat, "lon": lon, "acc": 5}
    return f"citywatch/{CITY}/devices/{device}/gps", doc


@contextlib.asynccontextmanager
async def handhelds(port: int, grids: Grids) -> AsyncIterator[dict[str, str]]:
    """Three officers: off-7 falls silent (offline), off-8 walks out of its cell, off-9 patrols."""
    codes = sorted(grids.codes)
    cells = {"off-7": codes[0], "off-8": codes[-1], "off-9": codes[1]}
    with Publisher(port) as pub:
        pub.send_all(
            [shift(o, f"dev-{o[-1]}", cell) for o, cell in cells.items()]
            + [fix("dev-7", grids.centroid(cells["off-7"]))]
        )

        async def alive() -> None:
            step = 0
            while True:
                step += 1
                pub.send_all(
                    [
                        fix("dev-8", grids.centroid(cells["off-8"]), 300.0),
                        fix("dev-9", grids.centroid(cells["off-9"]), 10.0 * (step % 4)),
                        (f"citywatch/{CITY}/devices/dev-8/heartbeat", {"ts": time.time()}),
                        (f"citywatch/{CITY}/devices/dev-9/heartbeat", {"ts": time.time()}),
                    ]
                )
                await asyncio.sleep(0.3)  # a handheld's pace, not waiting for a result

        task = asyncio.create_task(alive())
        try:
            yield cells
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def report_case(port: int, case: str, grid: str) -> None:
    doc = {
        "ts": time.time(),
        "event": "reported",
        "category": "0101",
        "grid": grid,
        "unit": "unit-sanitation",
    }
    with Publisher(port) as pub:
        pub.send_all([(f"citywatch/{CITY}/cases/{case}/events", doc)])


async def test_alerts_arrive_live_and_an_ack_shows_in_a_second_browser(
    mosquitto: Mosquitto, influx: Influx, influx_db: str, tmp_path: Path, browser: Browser
) -> None:
    requests = Requests()
    async with running(mosquitto, influx, influx_db, tmp_path, tokens=TOKENS) as run:
        desk_ctx = await browser.new_context(viewport=DESKTOP, locale="zh-CN")
        desk = requests.watch(await desk_ctx.new_page())
        await desk.goto(run.base + "/")
        # A wrong token: a clear error, still on the sign-in form.
        await desk.get_by_label("访问令牌").fill("not-a-token")
        await desk.get_by_role("button", name="登录").click()
        await expect(desk.locator("#login-error")).to_contain_text("unknown token")
        await expect(desk.locator("#login-error")).to_contain_text("令牌无效")
        await run.shot(desk, "desktop-0-wrong-token")
        await sign_in(desk, "duty-secret-1")
        assert await desk.evaluate("sessionStorage.getItem('citywatch.token')") == "duty-secret-1"

        lead_ctx = await browser.new_context(
            viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="zh-CN"
        )
        phone = requests.watch(await lead_ctx.new_page())
        await phone.goto(run.base + "/")
        await sign_in(phone, "lead7-secret")
        await expect(phone.locator("#who")).to_have_text("lead-7")

        # The map draws every cell of the district.
        await expect(desk.locator("path.cell")).to_have_count(len(run.grids.codes))

        async with handhelds(mosquitto.port, run.grids) as cells:
            report_case(mosquitto.port, "E1", cells["off-9"])
            offline = 'li.alert[data-rule="device_offline"]'
            for page in (desk, phone):
                await expect(page.locator(offline)).to_have_attribute("data-status", "firing")
                await expect(page.locator(offline)).to_have_attribute("data-severity", "red")
                await expect(page.locator(offline)).to_contain_text("off-7")
                await expect(page.locator(offline)).to_contain_text(cells["off-7"])
            # The lead sees their district only: off-8's cell is in another street.
            await expect(desk.locator('li.alert[data-rule="patrol_out_of_grid"]')).to_have_count(1)
            await expect(phone.locator('li.alert[data-rule="patrol_out_of_grid"]')).to_have_count(0)
            # Officers on the map, coloured by state, positions live.
            for officer, state in (
                ("off-7", "offline"),
                ("off-8", "out_of_grid"),
                ("off-9", "patrolling"),
            ):
                marker = desk.locator(f'g.officer[data-officer="{officer}"]')
                await expect(marker).to_have_attribute("data-state", state)
                await expect(marker).to_be_visible()
            # The case goes red and is listed among the lit cases.
            await expect(desk.locator('li.case[data-case="E1"]')).to_have_class("case light-red")
            await expect(desk.locator('li.case[data-case="E1"]')).to_contain_text("已超时")
            await expect(desk.locator('li.alert[data-rule="case_overdue"]')).to_have_count(1)
            # The duration counts up live.
            dur = desk.locator(f"{offline} .dur")
            first = await dur.text_content()
            await expect(dur).not_to_have_text(first or "")
            await run.shot(desk, "desktop-1-alerts")
            await run.shot(phone, "phone-1-alerts")

            card = desk.locator(offline)
            await card.get_by_label("处置说明").fill(NOTE)
            await card.get_by_role("button", name="确认").click()
            await expect(card).to_have_attribute("data-status", "acknowledged")
            await expect(card.locator(".acked")).to_contain_text("duty-desk")
            # The second browser sees the change over its stream, without reloading.
            lead_card = phone.locator(offline)
            await expect(lead_card).to_have_attribute("data-status", "acknowledged")
            await expect(lead_card.locator(".acked")).to_contain_text(NOTE)
            await expect(lead_card.get_by_role("button", name="确认")).to_be_hidden()
            await run.shot(desk, "desktop-2-acknowledged")
            await run.shot(phone, "phone-2-acknowledged")

        # Nothing sticks out of the phone's width.
        width = await phone.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"]
        await desk.get_by_role("button", name="退出").click()
        await expect(desk.locator("#login")).to_be_visible()
        assert await desk.evaluate("sessionStorage.getItem('citywatch.token')") is None
        await desk_ctx.close()
        await lead_ctx.close()
        assert requests.urls and requests.off_host(run.base) == []
        assert requests.errors == []


def png(rgb: tuple[int, int, int]) -> bytes:
    """A 256x256 tile of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    rows = b"".join(b"\0" + bytes(rgb) * 256 for _ in range(256))
    header = struct.pack(">IIBBBBB", 256, 256, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


TILE_PNG = png((214, 228, 200))


async def test_without_tokens_locally_no_sign_in_and_tiles_fall_back_to_vector(
    mosquitto: Mosquitto,
    influx: Influx,
    influx_db: str,
    tmp_path: Path,
    browser: Browser,
) -> None:
    async with running(
        mosquitto, influx, influx_db, tmp_path, tiles_url="/tiles/{z}/{x}/{y}.png"
    ) as run:
        ctx = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)

        async def serve(route: Route) -> None:
            await route.fulfill(status=200, content_type="image/png", body=TILE_PNG)

        await ctx.route("**/tiles/**", serve)
        page = await ctx.new_page()
        await page.goto(run.base + "/")
        # No tokens configured and a local browser: straight to the console.
        await expect(page.locator("#console")).to_be_visible()
        await expect(page.locator("#login")).to_be_hidden()
        await expect(page.locator("#who")).to_contain_text("本机")
        await expect(page.locator("path.cell")).to_have_count(len(run.grids.codes))
        await expect(page.locator("image.tile.loaded").first).to_be_attached()
        await run.shot(page, "phone-3-tiles")
        # Tiles that fail: the vector map stays, with a note.
        await ctx.unroute("**/tiles/**")
        other = await ctx.new_page()
        await other.goto(run.base + "/")
        await expect(other.locator("#map-note")).to_contain_text("底图加载失败")
        await expect(other.locator("path.cell")).to_have_count(len(run.grids.codes))
        await expect(other.locator("image.tile")).to_have_count(0)
        # The console's own requests pass the checks against other sites' pages: its
        # stream connects, and an acknowledgement (a same-origin JSON POST) goes through.
        await expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
        async with handhelds(mosquitto.port, run.grids):
            card = page.locator('li.alert[data-rule="device_offline"]')
            await expect(card).to_have_attribute("data-status", "firing")
            await card.get_by_role("button", name="确认").click()
            await expect(card).to_have_attribute("data-status", "acknowledged")
            await expect(card.locator(".acked")).to_contain_text("local")
        await ctx.close()
