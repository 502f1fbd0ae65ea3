"""A WhatsApp QR string as inline SVG markup, for the API and the live session page."""
import qrcode
from qrcode.compat.etree import ET
from qrcode.image.svg import SvgPathFillImage


class _InlineSvg(SvgPathFillImage):
    """One path on a white square (readable on dark themes too), sized by its container (no fixed mm size, no
    id that would clash when a page shows several). The path draws each horizontal run of dark modules as one
    rectangle: about a quarter of the size of one square per module, and the QR code rotates every 20 s."""

    def _svg(self, **kwargs):
        svg = super()._svg(**kwargs)
        svg.attrib.pop("width", None)
        svg.attrib.pop("height", None)
        svg.set("role", "img")
        svg.set("aria-label", "WhatsApp QR code")
        return svg

    def process(self):
        # With the default box_size of 10, one module is one unit of the viewBox.
        runs = []
        for row_index, row in enumerate(self.modules):
            column = 0
            while column < len(row):
                if not row[column]:
                    column += 1
                    continue
                start = column
                while column < len(row) and row[column]:
                    column += 1
                runs.append(f"M{start + self.border},{row_index + self.border}h{column - start}v1h-{column - start}z")
        self._subpaths = []
        self.path = ET.Element(ET.QName("path"), d="".join(runs), **self.QR_PATH_STYLE)
        self._img.append(self.path)


def qr_svg(data):
    """`<svg …>…</svg>` (no XML declaration) that encodes `data`; medium error correction, as phones scan it off
    a screen."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2, box_size=10,
                         image_factory=_InlineSvg)
    code.add_data(data)
    code.make(fit=True)
    return code.make_image().to_string(encoding="unicode")


def qr_matrix(data):
    """The modules `qr_svg(data)` draws (True = dark), without the border: for tests and other renderers."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=0)
    code.add_data(data)
    code.make(fit=True)
    return code.get_matrix()
