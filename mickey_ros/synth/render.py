"""Headless OpenGL rendering (moderngl + EGL) of RGB and exact metric camera-z depth.

Convention:
    Cameras are OpenCV pinhole cameras: ``T_cam_world`` (4, 4) maps world points into the camera
    frame (x right, y down, z forward, metres) and K (3, 3) has pixel centres at integer
    coordinates. ``projection_from_K`` builds a GL matrix for which row 0 of the read-back buffer is
    the top image row, so images need no flip and a point projecting to (u, v) with K lands in
    pixel (round(u), round(v)). Depth is camera z in metres written to an R32F attachment; pixels
    that see the sky or nothing are 0.

On a machine without a GPU, Mesa's llvmpipe renders on the CPU; on NVIDIA machines the same code
runs on the GPU through the NVIDIA EGL driver.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from mickey_ros.synth.primitives import VERTEX_FLOATS
from mickey_ros.synth.scene import Scene
from mickey_ros.synth.textures import TextureBank

EGL_PACKAGES = "libegl1 libegl-mesa0 libgl1-mesa-dri"

_VERTEX_SHADER = """
#version 330
uniform mat4 mvp;
uniform mat4 view;
in vec3 in_pos; in vec3 in_normal; in vec2 in_uv; in float in_layer; in vec3 in_tint;
out vec3 v_world; out vec3 v_normal; out vec2 v_uv; flat out float v_layer; out vec3 v_tint;
out float v_z;
void main() {
    vec4 world = vec4(in_pos, 1.0);
    gl_Position = mvp * world;
    v_z = (view * world).z;
    v_world = in_pos; v_normal = in_normal; v_uv = in_uv; v_layer = in_layer; v_tint = in_tint;
}
"""

_FRAGMENT_SHADER = """
#version 330
uniform sampler2DArray textures;
uniform vec3 eye;
uniform vec4 light;          // w = 1: point light at xyz; w = 0: sun in direction xyz
uniform vec3 light_colour;
uniform float ambient;
uniform vec3 gain;           // per-view exposure and white balance
uniform float noise_sigma;   // per-view sensor noise, in 8-bit units
uniform uint noise_seed;
uniform vec3 sky_top;
uniform vec3 sky_horizon;
in vec3 v_world; in vec3 v_normal; in vec2 v_uv; flat in float v_layer; in vec3 v_tint;
in float v_z;
layout(location = 0) out vec4 out_colour;
layout(location = 1) out float out_depth;

uint hash(uint x) {
    x ^= x >> 16; x *= 0x7feb352dU; x ^= x >> 15; x *= 0x846ca68bU; x ^= x >> 16;
    return x;
}
float uniform01(uint x) { return (float(hash(x) >> 8) + 0.5) / 16777216.0; }

vec3 gaussian3() {
    uint base = hash(uint(gl_FragCoord.x) + 8192U * uint(gl_FragCoord.y) + hash(noise_seed));
    vec3 g;
    for (int i = 0; i < 3; ++i) {
        float u1 = uniform01(base + uint(2 * i) * 0x9e3779b9U);
        float u2 = uniform01(base + uint(2 * i + 1) * 0x9e3779b9U);
        g[i] = sqrt(-2.0 * log(u1)) * cos(6.2831853 * u2);
    }
    return g;
}

void main() {
    vec3 view_dir = normalize(v_world - eye);
    vec3 colour;
    if (v_layer < 0.0) {
        float t = clamp(view_dir.z, 0.0, 1.0);
        colour = mix(sky_horizon, sky_top, sqrt(t));
        out_depth = 0.0;
    } else {
        vec3 albedo = texture(textures, vec3(v_uv, v_layer)).rgb * v_tint;
        vec3 n = normalize(v_normal);
        n = dot(n, view_dir) > 0.0 ? -n : n;
        vec3 to_light = light.w > 0.5 ? light.xyz - v_world : light.xyz;
        float falloff = light.w > 0.5 ? 12.0 / (8.0 + dot(to_light, to_light)) : 1.0;
        float diffuse = max(dot(n, normalize(to_light)), 0.0) * min(falloff, 1.4);
        colour = albedo * light_colour * (ambient + (1.0 - ambient) * diffuse);
        out_depth = v_z;
    }
    colour = colour * gain + noise_sigma / 255.0 * gaussian3();
    out_colour = vec4(clamp(colour, 0.0, 1.0), 1.0);
}
"""


class EGLUnavailableError(RuntimeError):
    """No headless OpenGL context could be created."""


@dataclass(frozen=True)
class Exposure:
    """Per-view photometric jitter applied in the shader.

    Attributes:
        gain: (3,) RGB multiplier (exposure x white balance); 1 is neutral.
        noise_sigma: std of additive Gaussian sensor noise in 8-bit units.
        noise_seed: seed of the per-pixel noise hash.
    """

    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    noise_sigma: float = 0.0
    noise_seed: int = 0


def create_egl_context():
    """Create a standalone moderngl context on EGL (no display needed).

    Raises:
        EGLUnavailableError: naming the Debian packages to install when EGL/Mesa is missing.
    """
    try:
        import moderngl
    except ImportError as err:
        raise EGLUnavailableError(
            "moderngl is not installed; pip install 'moderngl>=5.8' (or mickey_ros[synth])"
        ) from err
    try:
        return moderngl.create_standalone_context(backend="egl", require=330)
    except Exception as err:  # glcontext raises bare Exception subclasses for every EGL failure
        raise EGLUnavailableError(
            f"cannot create a headless EGL OpenGL 3.3 context ({err}); install the Mesa EGL "
            f"driver: sudo apt-get install -y {EGL_PACKAGES}"
        ) from err


_shared_context: tuple[int, object] | None = None  # (pid, context)


def shared_egl_context():
    """One EGL context per process, shared by every ``Renderer`` created without ``ctx``.

    Raises:
        EGLUnavailableError: in a process forked after its parent opened the context. Mesa's
            rendering threads do not survive fork, so GL calls there would hang; create renderers
            only in the workers, or start them with the "spawn" method.
    """
    global _shared_context
    if _shared_context is not None and _shared_context[0] != os.getpid():
        raise EGLUnavailableError(
            "this process was forked after its parent opened an EGL context, which cannot be used "
            "here; create PairRenderer/Renderer only inside the workers, or use "
            "multiprocessing.get_context('spawn') (DataLoader(multiprocessing_context='spawn'))"
        )
    if _shared_context is None:
        _shared_context = (os.getpid(), create_egl_context())
    return _shared_context[1]


def projection_from_K(
    K: np.ndarray, width: int, height: int, near: float, far: float
) -> np.ndarray:
    """OpenGL projection (4, 4) float64 for an OpenCV K, acting on OpenCV camera coordinates.

    Args:
        K: (3, 3) intrinsics, pixel centres at integer coordinates.
        width: image width in pixels.
        height: image height in pixels.
        near: near clip distance in metres (> 0).
        far: far clip distance in metres (> near).

    Returns:
        P such that ``ndc = (P @ [X, Y, Z, 1])[:3] / Z``: ndc x = 2 (u + 0.5) / W - 1 and
        ndc y = 2 (v + 0.5) / H - 1 with (u, v) the OpenCV pixel; ndc z maps [near, far] to [-1, 1].

    >>> K = np.array([[100.0, 0, 49.5], [0, 100, 39.5], [0, 0, 1]])
    >>> P = projection_from_K(K, 100, 80, 0.1, 10)
    >>> np.allclose((P @ [0, 0, 2, 1])[[0, 1, 3]], [0.0, 0.0, 2.0])
    True
    """
    P = np.zeros((4, 4))
    P[0, 0], P[0, 2] = 2 * K[0, 0] / width, 2 * (K[0, 2] + 0.5) / width - 1
    P[0, 1] = 2 * K[0, 1] / width
    P[1, 1], P[1, 2] = 2 * K[1, 1] / height, 2 * (K[1, 2] + 0.5) / height - 1
    P[2, 2], P[2, 3] = (far + near) / (far - near), -2 * far * near / (far - near)
    P[3, 2] = 1.0
    return P


class Renderer:
    """Owns one EGL context, the texture bank on the GPU and the current scene's vertex buffer.

    Args:
        bank: textures uploaded once as a mip-mapped texture array.
        ctx: an existing moderngl context; ``None`` uses the process-wide EGL context.
        near: near clip distance in metres.
        far: far clip distance in metres (the sky box sits inside it).
    """

    def __init__(self, bank: TextureBank, ctx=None, near: float = 0.05, far: float = 400.0):
        import moderngl

        self.ctx = ctx if ctx is not None else shared_egl_context()
        self.bank = bank
        self.near, self.far = near, far
        self.program = self.ctx.program(
            vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER
        )
        L, S = bank.layers.shape[0], bank.layers.shape[1]
        self.textures = self.ctx.texture_array(
            (S, S, L), 3, np.ascontiguousarray(bank.layers).tobytes()
        )
        self.textures.build_mipmaps()
        self.textures.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
        # no anisotropic filtering: it costs llvmpipe 7x (75 vs 11 ms at 540x720)
        self.program["sky_top"].value = (0.35, 0.55, 0.85)
        self.program["sky_horizon"].value = (0.78, 0.85, 0.92)
        self._vao = self._vbo = self._scene = None
        self._targets: dict[tuple[int, int], object] = {}

    def set_scene(self, scene: Scene) -> None:
        """Upload ``scene``'s triangles and light (replaces the previous scene)."""
        vertices = np.ascontiguousarray(scene.vertices, np.float32)
        if vertices.ndim != 2 or vertices.shape[1] != VERTEX_FLOATS or len(vertices) % 3:
            raise ValueError(f"scene.vertices must be (3k, {VERTEX_FLOATS}), got {vertices.shape}")
        if self._vbo is not None:
            self._vao.release()
            self._vbo.release()
        self._vbo = self.ctx.buffer(vertices.tobytes())
        self._vao = self.ctx.vertex_array(
            self.program,
            [(self._vbo, "3f 3f 2f 1f 3f", "in_pos", "in_normal", "in_uv", "in_layer", "in_tint")],
        )
        self.program["light"].value = tuple(float(v) for v in scene.light.vector)
        self.program["light_colour"].value = scene.light.colour
        self.program["ambient"].value = scene.light.ambient
        self._scene = scene

    @property
    def scene(self) -> Scene | None:
        """The scene last passed to ``set_scene``."""
        return self._scene

    def render(
        self,
        T_cam_world: np.ndarray,
        K: np.ndarray,
        size_wh: tuple[int, int],
        exposure: Exposure = Exposure(),
        with_rgb: bool = True,
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """Render one view of the current scene.

        Args:
            T_cam_world: (4, 4) world-to-camera, OpenCV axes, metres.
            K: (3, 3) intrinsics for an image of ``size_wh``.
            size_wh: (W, H) in pixels.
            exposure: per-view gain and noise.
            with_rgb: False skips the colour read-back (cheap depth-only renders).

        Returns:
            rgb (H, W, 3) uint8 or None, depth (H, W) float32 camera z in metres (0 = no surface).
        """
        if self._scene is None:
            raise RuntimeError("Renderer.render called before set_scene(scene)")
        W, H = (int(v) for v in size_wh)
        fbo = self._target(W, H)
        fbo.use()
        fbo.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
        view = np.asarray(T_cam_world, np.float64)
        mvp = projection_from_K(np.asarray(K, np.float64), W, H, self.near, self.far) @ view
        self.program["mvp"].write(mvp.T.astype("f4").tobytes())
        self.program["view"].write(view.T.astype("f4").tobytes())
        self.program["eye"].value = tuple(float(v) for v in -view[:3, :3].T @ view[:3, 3])
        self.program["gain"].value = tuple(float(g) for g in exposure.gain)
        self.program["noise_sigma"].value = float(exposure.noise_sigma)
        self.program["noise_seed"].value = int(exposure.noise_seed) & 0xFFFFFFFF
        self.textures.use(0)
        self.ctx.enable(self.ctx.DEPTH_TEST)
        self._vao.render()
        depth = np.frombuffer(fbo.read(components=1, attachment=1, dtype="f4"), np.float32)
        rgb = None
        if with_rgb:  # RGBA read-back is ~10x faster than RGB on llvmpipe (no repacking)
            rgba = np.frombuffer(fbo.read(components=4, attachment=0), np.uint8)
            rgb = cv2.cvtColor(rgba.reshape(H, W, 4), cv2.COLOR_RGBA2RGB)
        return rgb, depth.reshape(H, W).copy()

    def _target(self, W: int, H: int):
        if (W, H) not in self._targets:
            colour = self.ctx.renderbuffer((W, H), 4)
            depth_z = self.ctx.renderbuffer((W, H), 1, dtype="f4")
            self._targets[(W, H)] = self.ctx.framebuffer(
                [colour, depth_z], self.ctx.depth_renderbuffer((W, H))
            )
        return self._targets[(W, H)]

    def release(self) -> None:
        """Free this renderer's GPU objects (the shared context lives on)."""
        for fbo in self._targets.values():
            for attachment in (*fbo.color_attachments, fbo.depth_attachment):
                attachment.release()
            fbo.release()
        self._targets.clear()
        for obj in (self._vao, self._vbo, self.textures, self.program):
            if obj is not None:
                obj.release()
        self._vao = self._vbo = self._scene = None
