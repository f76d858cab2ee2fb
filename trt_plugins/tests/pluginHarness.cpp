/*
 * Checks the DCFCorrelation plugin library without TensorRT's runtime: the library is dlopen'ed
 * and the plugin made through its creator, as TensorRT's registry would.
 *
 *   pluginHarness LIB                      creator, fields, shapes, types, formats, serialisation,
 *                                          refused fields and the errors they log
 *   pluginHarness LIB --enqueue IN OUT N C T H W K L fp32|fp16
 *                                          (needs a GPU) runs enqueue on raw float32 IN, writes OUT
 *
 * Exit status 0 when every check passes; each failure is printed.
 */
#include "NvInfer.h"

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

using namespace nvinfer1;

namespace
{
int gFailures = 0;

void check(bool ok, std::string const& what)
{
    std::printf("%s %s\n", ok ? "PASS" : "FAIL", what.c_str());
    gFailures += ok ? 0 : 1;
}

// Stands in for TensorRT's logger (handed over through setLoggerFinder), so the checks can read
// what the plugin logged; each message also goes to stderr.
class RecordingLogger final : public ILogger
{
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        std::fprintf(stderr, "plugin log: %s\n", msg);
        mLastError = severity == Severity::kERROR ? msg : "";
    }
    //! The last message if it was an error, then forgets it.
    std::string takeLastError()
    {
        std::string last;
        last.swap(mLastError);
        return last;
    }

private:
    std::string mLastError;
};

class RecordingLoggerFinder final : public ILoggerFinder
{
public:
    ILogger* findLogger() override
    {
        return &mLogger;
    }
    RecordingLogger& logger()
    {
        return mLogger;
    }

private:
    RecordingLogger mLogger;
};

RecordingLoggerFinder gLoggerFinder;

// Constant-only dimension expressions: enough for a plugin whose output shape is the input's with
// one constant dimension.
class ConstantExpr final : public IDimensionExpr, public apiv::VDimensionExpr
{
public:
    explicit ConstantExpr(int64_t value)
        : mValue(value)
    {
        IDimensionExpr::mImpl = this;
    }
    bool isConstant() const override
    {
        return true;
    }
    int64_t getConstantValue() const override
    {
        return mValue;
    }
    bool isSizeTensor() const override
    {
        return false;
    }

private:
    int64_t mValue;
};

class ConstantBuilder final : public IExprBuilder, public apiv::VExprBuilder
{
public:
    ConstantBuilder()
    {
        IExprBuilder::mImpl = this;
    }
    IDimensionExpr const* constant(int64_t value) override
    {
        mExprs.push_back(std::make_unique<ConstantExpr>(value));
        return mExprs.back().get();
    }
    IDimensionExpr const* operation(DimensionOperation, IDimensionExpr const&, IDimensionExpr const&) override
    {
        return nullptr;
    }
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override
    {
        return nullptr;
    }

private:
    std::vector<std::unique_ptr<ConstantExpr>> mExprs;
};

using GetCreators = IPluginCreatorInterface* const* (*) (int32_t&);
using SetLoggerFinder = void (*)(ILoggerFinder*);

IPluginCreatorV3One* findCreator(void* library)
{
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(library, "getCreators"));
    auto setLoggerFinder = reinterpret_cast<SetLoggerFinder>(dlsym(library, "setLoggerFinder"));
    check(getCreators != nullptr, "the library exports getCreators");
    check(setLoggerFinder != nullptr, "the library exports setLoggerFinder");
    if (setLoggerFinder != nullptr)
    {
        setLoggerFinder(&gLoggerFinder);
    }
    if (getCreators == nullptr)
    {
        return nullptr;
    }
    int32_t count = 0;
    IPluginCreatorInterface* const* creators = getCreators(count);
    check(count == 1, "one creator");
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);
    check(std::string(creator->getInterfaceInfo().kind) == "PLUGIN CREATOR_V3ONE", "the creator is IPluginCreatorV3One");
    return creator;
}

IPluginV3* make(IPluginCreatorV3One* creator, int32_t k, int32_t l)
{
    std::vector<PluginField> fields{
        PluginField("kernel_size", &k, PluginFieldType::kINT32, 1),
        PluginField("temporal_range", &l, PluginFieldType::kINT32, 1),
    };
    PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
    return creator->createPlugin("corr", &fc, TensorRTPhase::kBUILD);
}

//! A one-value field pointing at `value`, which must outlive the field.
PluginField int32Field(char const* name, int32_t const& value)
{
    return PluginField(name, &value, PluginFieldType::kINT32, 1);
}

PluginField int64Field(char const* name, int64_t const& value)
{
    return PluginField(name, &value, PluginFieldType::kINT64, 1);
}

//! createPlugin with exactly these fields; null when the creator refuses them.
std::unique_ptr<IPluginV3> makeFrom(IPluginCreatorV3One* creator, std::vector<PluginField> fields)
{
    PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
    return std::unique_ptr<IPluginV3>(creator->createPlugin("corr", &fc, TensorRTPhase::kBUILD));
}

//! Checks that the creator refuses `fields` and logs an error containing `expected`.
void checkRefused(IPluginCreatorV3One* creator, std::vector<PluginField> fields, std::string const& expected,
    std::string const& what)
{
    gLoggerFinder.logger().takeLastError();
    bool const refused = makeFrom(creator, std::move(fields)) == nullptr;
    std::string const error = gLoggerFinder.logger().takeLastError();
    check(refused && error.find(expected) != std::string::npos, what + ", logging \"" + expected + "\"");
}

//! kernel_size of a plugin, from the fields it serialises.
int32_t serialisedKernelSize(IPluginV3& plugin)
{
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin.getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    return *static_cast<int32_t const*>(runtime->getFieldsToSerialize()->fields[0].data);
}

DynamicPluginTensorDesc desc(DataType type, TensorFormat format)
{
    DynamicPluginTensorDesc d{};
    d.desc.type = type;
    d.desc.format = format;
    d.desc.dims.nbDims = 5;
    return d;
}

void checkPlugin(IPluginCreatorV3One* creator)
{
    check(std::string(creator->getPluginName()) == "DCFCorrelation", "plugin name DCFCorrelation");
    check(std::string(creator->getPluginVersion()) == "1", "plugin version 1");
    PluginFieldCollection const* names = creator->getFieldNames();
    check(names->nbFields == 2 && std::string(names->fields[0].name) == "kernel_size"
            && std::string(names->fields[1].name) == "temporal_range"
            && names->fields[0].type == PluginFieldType::kINT32,
        "fields kernel_size, temporal_range (INT32)");

    std::unique_ptr<IPluginV3> plugin(make(creator, 5, 2));
    check(plugin != nullptr, "createPlugin(kernel_size=5, temporal_range=2)");
    if (!plugin)
    {
        return;
    }
    auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    check(core && build && runtime, "core, build and runtime capabilities");
    check(std::string(core->getPluginName()) == "DCFCorrelation" && std::string(core->getPluginVersion()) == "1",
        "the plugin reports its name and version");
    check(build->getNbOutputs() == 1, "one output");

    // Output shape: (N, K*K*2L, T, H, W) from (N, C, T, H, W).
    ConstantBuilder exprs;
    DimsExprs in{};
    in.nbDims = 5;
    int64_t const dims[5] = {8, 12, 13, 40, 40};
    for (int32_t i = 0; i < 5; ++i)
    {
        in.d[i] = exprs.constant(dims[i]);
    }
    DimsExprs out{};
    int32_t status = build->getOutputShapes(&in, 1, nullptr, 0, &out, 1, exprs);
    bool shapeOk = status == 0 && out.nbDims == 5;
    int64_t const expected[5] = {8, 100, 13, 40, 40};
    for (int32_t i = 0; shapeOk && i < 5; ++i)
    {
        shapeOk = out.d[i]->isConstant() && out.d[i]->getConstantValue() == expected[i];
    }
    check(shapeOk, "output shape (8, 100, 13, 40, 40) for input (8, 12, 13, 40, 40)");
    DimsExprs fourD{};
    fourD.nbDims = 4;
    check(build->getOutputShapes(&fourD, 1, nullptr, 0, &out, 1, exprs) != 0, "a 4-D input is refused");

    // Types: the output has the input's type; float32 and float16 only.
    for (DataType type : {DataType::kFLOAT, DataType::kHALF})
    {
        DataType outType{};
        check(build->getOutputDataTypes(&outType, 1, &type, 1) == 0 && outType == type, "output type follows the input");
    }
    DataType const int8 = DataType::kINT8;
    DataType ignored{};
    check(build->getOutputDataTypes(&ignored, 1, &int8, 1) != 0, "int8 is refused");

    // Formats: linear float32 or float16, the output like the input.
    DynamicPluginTensorDesc io[2] = {desc(DataType::kFLOAT, TensorFormat::kLINEAR), desc(DataType::kFLOAT, TensorFormat::kLINEAR)};
    check(build->supportsFormatCombination(0, io, 1, 1) && build->supportsFormatCombination(1, io, 1, 1), "fp32 linear");
    io[0] = desc(DataType::kHALF, TensorFormat::kLINEAR);
    io[1] = desc(DataType::kHALF, TensorFormat::kLINEAR);
    check(build->supportsFormatCombination(0, io, 1, 1) && build->supportsFormatCombination(1, io, 1, 1), "fp16 linear");
    io[1] = desc(DataType::kFLOAT, TensorFormat::kLINEAR);
    check(!build->supportsFormatCombination(1, io, 1, 1), "fp16 in, fp32 out is refused");
    io[0] = desc(DataType::kHALF, TensorFormat::kCHW2);
    check(!build->supportsFormatCombination(0, io, 1, 1), "a vectorised format is refused");
    io[0] = desc(DataType::kINT8, TensorFormat::kLINEAR);
    check(!build->supportsFormatCombination(0, io, 1, 1), "int8 is refused");

    // Serialisation round trip: the fields to serialise recreate the same plugin.
    PluginFieldCollection const* saved = runtime->getFieldsToSerialize();
    std::unique_ptr<IPluginV3> restored(creator->createPlugin("corr", saved, TensorRTPhase::kRUNTIME));
    bool roundTrip = restored != nullptr;
    if (roundTrip)
    {
        auto* restoredBuild = static_cast<IPluginV3OneBuild*>(restored->getCapabilityInterface(PluginCapabilityType::kBUILD));
        DimsExprs again{};
        roundTrip = restoredBuild->getOutputShapes(&in, 1, nullptr, 0, &again, 1, exprs) == 0
            && again.d[1]->getConstantValue() == 100;
    }
    check(roundTrip && saved->nbFields == 2, "serialised fields recreate kernel_size=5, temporal_range=2");
    std::unique_ptr<IPluginV3> copy(plugin->clone());
    check(copy != nullptr, "clone");
    if (copy)
    {
        auto* copyRuntime = static_cast<IPluginV3OneRuntime*>(copy->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        PluginFieldCollection const* fields = copyRuntime->getFieldsToSerialize();
        check(fields->fields[0].data != saved->fields[0].data && *static_cast<int32_t const*>(fields->fields[0].data) == 5,
            "a clone serialises its own fields");
    }

    // Bad or missing fields give no plugin and an error saying what was expected (and no exception
    // across the boundary).
    int32_t const k5 = 5, l2 = 2, even = 4, zero = 0, hugeL = std::numeric_limits<int32_t>::max();
    checkRefused(creator, {int32Field("kernel_size", even), int32Field("temporal_range", l2)},
        "expected an odd kernel_size in 1..9, got kernel_size=4", "an even kernel_size is refused");
    checkRefused(creator, {int32Field("kernel_size", k5), int32Field("temporal_range", zero)},
        "expected temporal_range in 1..", "temporal_range 0 is refused");
    checkRefused(creator, {int32Field("kernel_size", k5), int32Field("temporal_range", hugeL)},
        "(K*K*2L output channels within INT32)", "a temporal_range whose output channels overflow INT32 is refused");
    checkRefused(
        creator, {int32Field("temporal_range", l2)}, "kernel_size is missing", "a missing kernel_size is refused");
    checkRefused(
        creator, {int32Field("kernel_size", k5)}, "temporal_range is missing", "a missing temporal_range is refused");
    checkRefused(creator, {}, "got neither", "no fields are refused");
    int64_t const kBeyondInt32 = (int64_t{1} << 32) + 5; // would narrow to a valid 5
    checkRefused(creator, {int64Field("kernel_size", kBeyondInt32), int32Field("temporal_range", l2)},
        "expected kernel_size in the INT32 range, got 4294967301", "an INT64 kernel_size of 2^32 + 5 is refused");
    int64_t const lBeyondInt32 = (int64_t{1} << 32) + 2; // would narrow to a valid 2
    checkRefused(creator, {int32Field("kernel_size", k5), int64Field("temporal_range", lBeyondInt32)},
        "expected temporal_range in the INT32 range, got 4294967298", "an INT64 temporal_range of 2^32 + 2 is refused");
    float const k5f = 5.F;
    PluginField const floatK("kernel_size", &k5f, PluginFieldType::kFLOAT32, 1);
    checkRefused(creator, {floatK, int32Field("temporal_range", l2)}, "expected kernel_size as one INT32 (or INT64) value",
        "a FLOAT32 kernel_size is refused");
    int64_t const k3 = 3;
    std::unique_ptr<IPluginV3> fromInt64
        = makeFrom(creator, {int64Field("kernel_size", k3), int32Field("temporal_range", l2)});
    check(fromInt64 != nullptr && serialisedKernelSize(*fromInt64) == 3, "an INT64 kernel_size of 3 is accepted");
}

int enqueue(IPluginCreatorV3One* creator, char** argv)
{
    std::string const inPath = argv[0], outPath = argv[1];
    int64_t const n = std::stoll(argv[2]), c = std::stoll(argv[3]), t = std::stoll(argv[4]), h = std::stoll(argv[5]),
                  w = std::stoll(argv[6]);
    int32_t const k = std::stoi(argv[7]), l = std::stoi(argv[8]);
    bool const half = std::string(argv[9]) == "fp16";
    int64_t const inCount = n * c * t * h * w, outCount = n * k * k * 2 * l * t * h * w;
    std::vector<float> input(inCount), output(outCount);
    std::ifstream(inPath, std::ios::binary).read(reinterpret_cast<char*>(input.data()), inCount * sizeof(float));

    std::unique_ptr<IPluginV3> plugin(make(creator, k, l));
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    size_t const element = half ? sizeof(__half) : sizeof(float);
    void* dIn = nullptr;
    void* dOut = nullptr;
    if (cudaMalloc(&dIn, inCount * element) != cudaSuccess || cudaMalloc(&dOut, outCount * element) != cudaSuccess)
    {
        std::printf("FAIL cudaMalloc\n");
        return 1;
    }
    if (half)
    {
        std::vector<__half> h16(inCount);
        for (int64_t i = 0; i < inCount; ++i)
        {
            h16[i] = __float2half(input[i]);
        }
        cudaMemcpy(dIn, h16.data(), inCount * element, cudaMemcpyHostToDevice);
    }
    else
    {
        cudaMemcpy(dIn, input.data(), inCount * element, cudaMemcpyHostToDevice);
    }
    cudaMemset(dOut, 0xFF, outCount * element); // NaN everywhere: the kernel must write every element
    PluginTensorDesc inDesc{}, outDesc{};
    inDesc.type = outDesc.type = half ? DataType::kHALF : DataType::kFLOAT;
    inDesc.format = outDesc.format = TensorFormat::kLINEAR;
    inDesc.dims.nbDims = outDesc.dims.nbDims = 5;
    int64_t const inDims[5] = {n, c, t, h, w};
    for (int32_t i = 0; i < 5; ++i)
    {
        inDesc.dims.d[i] = outDesc.dims.d[i] = inDims[i];
    }
    outDesc.dims.d[1] = int64_t{k} * k * 2 * l;
    cudaStream_t stream{};
    cudaStreamCreate(&stream);
    void const* inputs[] = {dIn};
    void* outputs[] = {dOut};
    int32_t const status = runtime->enqueue(&inDesc, &outDesc, inputs, outputs, nullptr, stream);
    cudaStreamSynchronize(stream);
    check(status == 0 && cudaGetLastError() == cudaSuccess, "enqueue");
    if (half)
    {
        std::vector<__half> h16(outCount);
        cudaMemcpy(h16.data(), dOut, outCount * element, cudaMemcpyDeviceToHost);
        for (int64_t i = 0; i < outCount; ++i)
        {
            output[i] = __half2float(h16[i]);
        }
    }
    else
    {
        cudaMemcpy(output.data(), dOut, outCount * element, cudaMemcpyDeviceToHost);
    }
    std::ofstream(outPath, std::ios::binary).write(reinterpret_cast<char const*>(output.data()), outCount * sizeof(float));
    cudaFree(dIn);
    cudaFree(dOut);
    cudaStreamDestroy(stream);
    return gFailures == 0 ? 0 : 1;
}
} // namespace

int main(int argc, char** argv)
{
    if (argc != 2 && !(argc == 13 && std::string(argv[2]) == "--enqueue"))
    {
        std::fprintf(stderr, "usage: %s LIB [--enqueue IN OUT N C T H W K L fp32|fp16]\n", argv[0]);
        return 2;
    }
    void* library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr)
    {
        std::printf("FAIL dlopen: %s\n", dlerror());
        return 1;
    }
    IPluginCreatorV3One* creator = findCreator(library);
    if (creator == nullptr)
    {
        return 1;
    }
    if (argc == 13)
    {
        return enqueue(creator, argv + 3);
    }
    checkPlugin(creator);
    std::printf("%d failure(s)\n", gFailures);
    return gFailures == 0 ? 0 : 1;
}
